"""Tests for practice (b) — AWQ scale search, clip search, folding. 测试：AWQ。"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from exercises.ex5_5_awq import awq_quantize_model, awq_scales, fold_scales, search_awq_scale, search_clip
from kata.harness.check import (
    expect_at_most,
    expect_beats_rtn_on_the_real_model,
    expect_close,
    expect_linears_on_grid,
    expect_tensor,
    expect_tensor_close,
    raises,
)
from kata.llama import rope_tables, tiny_llama
from kata.oracles import distinct_per_group, logit_error_against_rtn, rtn


def layer_with_salient_inputs(seed=0):
    """A layer whose inputs have a few loud channels (as LLM activations do, see 5.4): AWQ's home ground."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1024, 128, generator=g)
    x[:, [3, 40, 77]] *= 25
    return torch.randn(64, 128, generator=g) * 0.02, x


def output_error_with_scales(w, x, s, num_bits=4, group_size=32) -> float:
    """What the searched scales buy: ‖x·Wᵀ − (x/s)·Q(W·s)ᵀ‖² / ‖x·Wᵀ‖²."""
    y_hat = (x / s) @ rtn(w * s, num_bits, group_size).T
    return ((x @ w.T - y_hat).pow(2).sum() / (x @ w.T).pow(2).sum()).item()


def test_the_worked_scales():
    expect_tensor_close(awq_scales(torch.tensor([1.0, 4.0]), 1.0), torch.tensor([0.5, 2.0]), "s for ratio 1",
                        atol=1e-6)


def test_the_ratio_is_the_exponent_and_zero_gives_unit_scales_that_is_plain_rtn():
    act = torch.tensor([0.1, 3.0, 7.0])
    expect_tensor_close(awq_scales(act, 0.0), torch.ones(3), "s for ratio 0", atol=0)
    # Ratio 0.5: s = √mean|x| / √(max · min) = [0.1, 3, 7]^0.5 / (0.7)^0.25; float32 rounding only.
    expect_tensor_close(awq_scales(act, 0.5), act.sqrt() / 0.7**0.25, "s for ratio 0.5", atol=0, rtol=1e-6)


def test_scales_are_normalised_so_max_times_min_is_one():
    act = torch.rand(50, generator=torch.Generator().manual_seed(1)) + 0.01
    s = awq_scales(act, 0.6)
    expect_close((s.max() * s.min()).item(), 1.0, "max(s) · min(s)", rel=1e-5)
    # Normalising divides every s by one number: s stays mean|x|^0.6 up to that factor (float32 rounding only).
    unnormalised = act.pow(0.6)
    expect_tensor_close(s, unnormalised / (unnormalised.max() * unnormalised.min()).sqrt(), "s for ratio 0.6",
                        atol=0, rtol=1e-5)


def test_the_search_returns_a_ratio_from_the_grid_and_its_scales():
    w, x = layer_with_salient_inputs()
    ratio, s = search_awq_scale([w], x, 4, 32, grid=10)
    assert ratio in [k / 10 for k in range(10)], f"ratio {ratio} is not on the grid 0, 0.1, …, 0.9"
    expect_tensor(s, "s", shape=(128,))
    expect_tensor_close(s, awq_scales(x.abs().mean(0), ratio), "s = awq_scales(mean|x|, ratio)", atol=1e-5)


def test_searched_scales_cut_the_output_error_well_below_rtn():
    w, x = layer_with_salient_inputs()
    _, s = search_awq_scale([w], x, 4, 32)
    ours, plain = output_error_with_scales(w, x, s), output_error_with_scales(w, x, torch.ones(128))
    assert ours < 0.8 * plain, f"AWQ {ours:.5f} vs RTN {plain:.5f}: scaling the loud channels should help"


def test_the_search_scores_all_linears_that_share_the_input():
    w, x = layer_with_salient_inputs()
    other = torch.randn(64, 128, generator=torch.Generator().manual_seed(100)) * 0.02
    other[:, [3, 40, 77]] *= 8  # this layer already has large weights on the loud inputs: it wants less scaling

    def summed_error(s):  # Σ over both linears of ‖x·Wᵀ − (x/s)·Q(W·s)ᵀ‖²
        return sum((x @ m.T - (x / s) @ rtn(m * s, 4, 32).T).pow(2).sum().item() for m in (w, other))

    ratio, s = search_awq_scale([w, other], x, 4, 32, grid=10)
    best = min(summed_error(awq_scales(x.abs().mean(0), k / 10)) for k in range(10))
    # Scored on w alone the search picks ratio 0.4; on both linears, 0.1 (summed error 1856 against 3133).
    expect_at_most(summed_error(s), best * (1 + 1e-4), f"summed output error of both linears at ratio {ratio}")


def test_clip_ratios_come_from_the_grid_and_never_hurt_a_group():
    _, x = layer_with_salient_inputs()
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))  # Gaussian tails: clipping pays
    c = search_clip(w, x, 3, 32)
    expect_tensor(c, "clip ratios", shape=(64, 4))
    assert ((c >= 0.5 - 1e-6) & (c <= 1.0)).all(), "ratios lie in [1 − max_shrink, 1]"

    def group_errors(w_hat):  # each group's share of the output error, mean over tokens
        diff = (w - w_hat).reshape(64, 4, 32)
        return torch.einsum("ngk,ogk->nog", x.reshape(-1, 4, 32), diff).pow(2).mean(0)

    clipped, plain = group_errors(rtn(w, 3, 32, clip_ratio=c)), group_errors(rtn(w, 3, 32))
    assert (clipped <= plain * (1 + 1e-4) + 1e-9).all(), "the search includes c = 1: no group may get worse"
    assert clipped.sum() < 0.9 * plain.sum(), f"clipping should cut the error: {clipped.sum():.4g} vs {plain.sum():.4g}"


@given(seed=st.integers(0, 2**16), low=st.floats(0.05, 1.0), spread=st.floats(1.0, 50.0))
def test_folding_into_the_norm_leaves_the_float_block_unchanged(seed, low, spread):
    model = tiny_llama()
    block = model.layers[0]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 64, generator=g)
    cos, sin = rope_tables(16, 8, 10000.0)
    with torch.no_grad():
        before = block(x, cos, sin)
        s = low * spread ** torch.rand(64, generator=g)  # positive scales in [low, low · spread]
        attn, mlp = block.self_attn, block.mlp
        weights = {name: p.clone() for name, p in block.named_parameters()}
        fold_scales(block.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj], s)
        s2 = low * spread ** torch.rand(128, generator=g)
        fold_scales(mlp.up_proj, [mlp.down_proj], s2)
        after = block(x, cos, sin)
    # The factors are in the weights: one float32 multiplication or division each (a reciprocal taken first
    # rounds once more), so 1e-6 relative.
    folded = {"input_layernorm.weight": weights["input_layernorm.weight"] / s,
              "mlp.up_proj.weight": weights["mlp.up_proj.weight"] / s2[:, None],
              "mlp.down_proj.weight": weights["mlp.down_proj.weight"] * s2}
    folded |= {f"self_attn.{p}_proj.weight": weights[f"self_attn.{p}_proj.weight"] * s for p in "qkv"}
    for name, expected in folded.items():
        expect_tensor_close(block.get_parameter(name), expected, f"{name} after folding", atol=0, rtol=1e-6)
    # Folding only moves factors between a weight and the next one: float32 rounding, relative to the output.
    expect_tensor_close(after, before, "block output after folding", atol=1e-5 * before.abs().max().item(),
                        rtol=1e-4)


def fold_linear_into_linear() -> None:
    """The valid twin of the bad folds below."""
    with torch.no_grad():
        fold_scales(torch.nn.Linear(4, 4), [torch.nn.Linear(4, 4)], torch.ones(4))


@pytest.mark.bad_input
def test_folding_into_something_else_is_a_type_error():
    with raises(TypeError, match=r"\bprevious\b", valid=lambda: fold_linear_into_linear()):
        fold_scales(torch.nn.ReLU(), [torch.nn.Linear(4, 4)], torch.ones(4))


def test_the_model_flow_puts_every_linear_on_the_grid():
    model = tiny_llama()
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    info = awq_quantize_model(model, ids, 4, 32)
    assert info["seconds"] >= 0
    expect_linears_on_grid(model, 4, 32)


def test_scales_alone_leave_the_float_model_unchanged():
    model = tiny_llama()
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids)
        info = awq_quantize_model(model, ids, 4, 32, round_weights=False)
        after = model(ids)
    assert info["mean_ratio"] >= 0
    expect_tensor_close(after, before, "logits after folding AWQ scales (no rounding)", atol=1e-4)
    assert distinct_per_group(model.layers[0].mlp.up_proj.weight, 32) > 16, "round_weights=False must not round"


def test_the_model_flow_beats_round_to_nearest_on_the_tiny_model():
    model = tiny_llama()
    with torch.no_grad():
        model.embed_tokens.weight[:, [3, 17, 40]] *= 20  # three loud channels, as LLM activations have (5.4)
    calib = torch.randint(0, 256, (8, 64), generator=torch.Generator().manual_seed(0))
    ours, plain = logit_error_against_rtn(model, lambda m: awq_quantize_model(m, calib, 3, 32), calib, 3, 32)
    expect_linears_on_grid(model, 3, 32, "the AWQ model whose logits were measured: ")
    # W3 g32, measured on the calibration ids: AWQ 0.0052 against RTN 0.0076 relative logit error (0.68×).
    expect_at_most(ours, 0.8 * plain, f"AWQ's relative logit error (RTN: {plain:.4f})")


@pytest.mark.slow
def test_on_the_real_model_awq_beats_rtn(smollm2, smollm2_reference, record_property):
    from kata.evaluate import calibration_windows

    calib = calibration_windows(4)
    expect_beats_rtn_on_the_real_model(record_property, "5.5 AWQ", smollm2,
                                       lambda m: awq_quantize_model(m, calib, 4, 64), smollm2_reference)


def test_the_defaults_are_4_bit_asymmetric_groups_of_64_on_a_20_point_grid():
    w, x = layer_with_salient_inputs()
    w = w + 0.02  # weights off centre: there the symmetric grid wants another ratio (0.25 against 0.35)
    assert search_awq_scale([w], x, symmetric=True)[0] != search_awq_scale([w], x, symmetric=False)[0]
    _, s = search_awq_scale([w], x)
    expect_tensor_close(s, search_awq_scale([w], x, 4, 64, symmetric=False, grid=20)[1], "default AWQ scales", atol=0)
    expect_tensor_close(search_clip(w, x), search_clip(w, x, 4, 64, symmetric=False, grid=20, max_shrink=0.5),
                        "default clip ratios", atol=0)
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    ours, explicit = tiny_llama(), tiny_llama()
    info = awq_quantize_model(ours, ids)
    awq_quantize_model(explicit, ids, 4, 64, symmetric=False, grid=20, clip=True, max_tokens=4096,
                       round_weights=True)
    for (name, got), (_, expected) in zip(ours.state_dict().items(), explicit.state_dict().items(), strict=True):
        expect_tensor_close(got, expected, f"{name} with the default arguments", atol=0)
    assert 0 <= info["seconds"] < 600 and 0 <= info["mean_ratio"] < 1, f"info: {info}"


@pytest.mark.parametrize("symmetric", [False, True])
def test_the_clip_search_takes_each_groups_best_candidate(symmetric):
    _, x = layer_with_salient_inputs()
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))
    w[:, 0] *= 30  # one outlier per row in group 0: there the largest shrink, c = 0.5, wins
    candidates = [1 - k / 10 for k in range(6)]  # grid 10, max_shrink 0.5

    def group_errors(c):  # each group's share of the output error, mean over tokens, for one c everywhere
        diff = (w - rtn(w, 3, 32, symmetric=symmetric, clip_ratio=c)).reshape(64, 4, 32)
        return torch.einsum("ngk,ogk->nog", x.reshape(-1, 4, 32), diff).pow(2).mean(0)

    errors = torch.stack([group_errors(c) for c in candidates])  # (candidates, out, groups)
    expected = torch.tensor(candidates)[errors.argmin(0)]
    got = search_clip(w, x, 3, 32, symmetric=symmetric, grid=10)
    expect_tensor_close(got, expected, f"clip ratios (symmetric={symmetric})", atol=1e-6)
    expect_close(got[:, 0].min().item(), 0.5, "the smallest ratio reached in the outlier group", rel=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_the_scale_search_scores_the_grid_it_is_given(symmetric):
    w, x = layer_with_salient_inputs()
    w = w + 0.02  # off centre: the symmetric and asymmetric grids pick different ratios here (0.2 and 0.1)
    loud = torch.randn(16, 128, generator=torch.Generator().manual_seed(100)) * 0.02
    loud[:, [3, 40, 77]] *= 8  # fewer rows, and large weights on the loud inputs: alone it wants less scaling

    def summed_error(s):  # Σ over the linears of mean_n ‖x_n·Wᵀ − (x_n/s)·Q(W·s)ᵀ‖², each divided by its width
        return sum((x @ m.T - (x / s) @ rtn(m * s, 4, 32, symmetric=symmetric).T).pow(2).mean().item()
                   for m in (loud, w))

    ratio, s = search_awq_scale([loud, w], x, 4, 32, symmetric=symmetric, grid=10)
    best = min(summed_error(awq_scales(x.abs().mean(0), k / 10)) for k in range(10))
    expect_at_most(summed_error(s), best * (1 + 1e-4), f"summed error at ratio {ratio}, symmetric={symmetric}")


def test_folding_into_a_linear_with_bias_keeps_its_function():
    g = torch.Generator().manual_seed(4)
    first, second = torch.nn.Linear(8, 6), torch.nn.Linear(6, 3)
    x, s = torch.randn(5, 8, generator=g), 0.5 + torch.rand(6, generator=g)
    with torch.no_grad():
        before = second(first(x))
        weight, bias, following = first.weight.clone(), first.bias.clone(), second.weight.clone()
        fold_scales(first, [second], s)
        # The factors are in the weights, one float32 rounding each: 1/s in the output rows and the bias, s in
        # the following columns.
        expect_tensor_close(first.weight, weight / s[:, None], "the Linear's weight after folding", atol=0,
                            rtol=1e-6)
        expect_tensor_close(first.bias, bias / s, "its bias after folding", atol=0, rtol=1e-6)
        expect_tensor_close(second.weight, following * s, "the following weight after folding", atol=0, rtol=1e-6)
        expect_tensor_close(second(first(x)), before, "output after folding into a Linear with bias", atol=1e-5)


@pytest.mark.bad_input
def test_the_type_error_names_what_it_was_given():
    with raises(TypeError, valid=lambda: fold_linear_into_linear()) as err:
        fold_scales(torch.nn.ReLU(), [torch.nn.Linear(4, 4)], torch.ones(4))
    assert "ReLU" in str(err.value), f"the message should name the type it got: {err.value}"


def awq_as_described(model, ids, num_bits, group_size, *, symmetric, grid, clip, round_weights):
    """The flow the docstring describes, written out with this module's own searches and every argument explicit:
    block by block, scale search and fold per shared input, clip search on the scaled input, round."""
    from kata.sequential import block_linear_inputs, first_block_input, rope, run_block

    with torch.no_grad():
        cos, sin = rope(model, ids.shape[1])
        x = first_block_input(model, ids)
        for block in model.layers:
            inputs = block_linear_inputs(block, x, cos, sin)
            attn, mlp = block.self_attn, block.mlp
            for key, previous, layers in [
                ("self_attn.q_proj", block.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj]),
                ("mlp.gate_proj", block.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj]),
                ("mlp.down_proj", mlp.up_proj, [mlp.down_proj]),
                ("self_attn.o_proj", None, [attn.o_proj]),
            ]:
                sample = inputs[key]
                if previous is not None:
                    _, s = search_awq_scale([m.weight for m in layers], sample, num_bits, group_size,
                                            symmetric=symmetric, grid=grid)
                    fold_scales(previous, layers, s)
                    sample = sample / s
                if not round_weights:
                    continue
                for layer in layers:
                    c = search_clip(layer.weight, sample, num_bits, group_size, symmetric=symmetric, grid=20,
                                    max_shrink=0.5) if clip else 1.0
                    layer.weight.copy_(rtn(layer.weight, num_bits, group_size, symmetric=symmetric, clip_ratio=c))
            x = run_block(block, x, cos, sin)


def expect_same_weights(got_model, expected_model, what):
    """Every linear as the recipe makes it. A few (row, group) clip choices may flip on float rounding if the
    flow computes x / s differently: allow 1 % of the weights to differ (each mistake tried moves far more)."""
    for (name, got), (_, expected) in zip(got_model.state_dict().items(), expected_model.state_dict().items(),
                                          strict=True):
        moved = (got - expected).abs() > 1e-5 * (1 + expected.abs())
        assert moved.float().mean() <= 0.01, (
            f"{what}: {name} 有 {moved.float().mean():.1%} 的权重与逐块流程不同 / "
            f"{moved.float().mean():.1%} of {name} differs from the block-by-block recipe")


@pytest.mark.parametrize(("num_bits", "group_size", "symmetric", "grid", "clip", "round_weights"), [
    (3, 32, True, 10, True, True),    # none of the defaults: every argument must reach the searches and the rounding
    (4, 16, False, 8, False, True),   # clip=False: scales, then plain rounding
    (4, 32, False, 10, True, False),  # round_weights=False: every place's scales folded, nothing rounded
])
def test_the_model_flow_is_the_block_by_block_recipe(num_bits, group_size, symmetric, grid, clip, round_weights):
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))
    ours, recipe = tiny_llama(), tiny_llama()
    with torch.no_grad():  # loud channels, so that the searches have something to find (5.4)
        for model in (ours, recipe):
            model.embed_tokens.weight[:, [3, 17, 40]] *= 20
    options = {"symmetric": symmetric, "grid": grid, "clip": clip, "round_weights": round_weights}
    awq_quantize_model(ours, ids, num_bits, group_size, **options)
    awq_as_described(recipe, ids, num_bits, group_size, **options)
    expect_same_weights(ours, recipe, f"W{num_bits} g{group_size} {options}")


@pytest.mark.parametrize(("max_tokens", "windows"), [
    (32, [0]),            # less than two windows: one window, never none
    (100, [0, 2, 5]),     # 100 // 32 = 3 windows, spread evenly: torch.linspace(0, 5, 3).long()
    (128, [0, 1, 3, 5]),  # 4 of 6: torch.linspace(0, 5, 4).long()
    (4096, [0, 1, 2, 3, 4, 5]),  # more than the text: every window, once
])
def test_the_searches_see_whole_windows_spread_evenly(max_tokens, windows):
    ids = torch.randint(0, 256, (6, 32), generator=torch.Generator().manual_seed(2))
    ours, on_those_windows = tiny_llama(), tiny_llama()
    awq_quantize_model(ours, ids, 4, 32, max_tokens=max_tokens)
    expect_linears_on_grid(ours, 4, 32, f"max_tokens={max_tokens}: ")
    awq_quantize_model(on_those_windows, ids[windows], 4, 32, max_tokens=10**6)
    expect_same_weights(ours, on_those_windows, f"max_tokens={max_tokens}: the searches should see windows {windows}")


def test_the_reported_seconds_are_the_time_it_took():
    import time

    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    info = awq_quantize_model(tiny_llama(), ids, 4, 32)
    assert 0 <= info["seconds"] <= time.perf_counter() - started, f"seconds: {info['seconds']}"
