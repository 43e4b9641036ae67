"""Tests for practice (c) — W8A8 with integer matmuls, and SmoothQuant. 测试：W8A8 与 SmoothQuant。"""

import copy

import pytest
import torch
from torch import nn

import exercises.ex5_7_smoothquant as ex5_7
from exercises.ex5_7_smoothquant import (
    W8A8Linear,
    fold_smoothing,
    int8_matmul,
    int8_matmul_exact,
    int_mm_runs,
    quantize_activations,
    search_alpha,
    smoothing_scales,
    smoothquant_model,
    swap_linears,
)
from kata.harness.check import (
    expect_at_most,
    expect_equal,
    expect_tensor,
    expect_tensor_close,
    expect_tensor_equal,
    raises,
)
from kata.llama import tiny_llama


def activations_with_outliers(seed=0, tokens=512, channels=128) -> torch.Tensor:
    """Activations whose channels 5 and 50 are 30× louder than the rest, as in an LLM's (4.1 Q2)."""
    x = torch.randn(tokens, channels, generator=torch.Generator().manual_seed(seed))
    x[:, [5, 50]] *= 30
    return x


def weight(seed=1, out_features=96, in_features=128) -> torch.Tensor:
    return torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed)) * 0.02


def int8(shape, seed) -> torch.Tensor:
    return torch.randint(-127, 128, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


def w8a8_output(x, w, granularity) -> torch.Tensor:
    """The oracle: symmetric int8 weights per row and activations per token / tensor, an exact integer product."""
    sw = w.abs().amax(1, keepdim=True) / 127
    sx = x.abs().amax(-1, keepdim=True) / 127 if granularity == "token" else x.abs().amax() / 127
    qw, qx = torch.round(w / sw), torch.round(x / sx)
    return (qx.double() @ qw.double().T).float() * sx * sw.T


def relative_error(got, expected) -> float:
    return ((got - expected).norm() / expected.norm()).item()


def test_per_token_scales_are_each_rows_max_over_127():
    x = activations_with_outliers()
    q, scale = quantize_activations(x, "token")
    expect_tensor(q, "q", shape=(512, 128), dtype=torch.int8)
    expect_tensor(scale, "scale", shape=(512, 1), dtype=torch.float32)
    expect_tensor_close(scale, x.abs().amax(-1, keepdim=True) / 127, "per-token scale", atol=0, rtol=1e-6)
    expect_tensor_equal(q.float(), torch.round(x / scale), "codes round(x / scale)")


def test_per_tensor_scale_is_one_number_for_the_whole_tensor():
    x = activations_with_outliers()
    q, scale = quantize_activations(x, "tensor")
    expect_tensor(scale, "scale", shape=(), dtype=torch.float32)
    expect_tensor_close(scale, x.abs().amax() / 127, "per-tensor scale", atol=0, rtol=1e-6)
    expect_equal(int(q.abs().max()), 127, "largest |code|")


def test_per_token_is_per_row_of_the_last_dimension_and_the_default():
    x = activations_with_outliers()[:24].reshape(2, 12, 128)  # (batch, tokens, channels)
    q, scale = quantize_activations(x)
    expect_tensor(q, "q", shape=(2, 12, 128), dtype=torch.int8)
    expect_tensor(scale, "scale", shape=(2, 12, 1), dtype=torch.float32)
    expect_tensor_close(scale, x.abs().amax(-1, keepdim=True) / 127, "per-token scale", atol=0, rtol=1e-6)


def test_codes_stay_within_plus_minus_127():
    q, _ = quantize_activations(torch.tensor([[-1.0, 1.0, 0.5]]), "token")
    expect_tensor_equal(q, torch.tensor([[-127, 127, 64]], dtype=torch.int8), "codes")


@pytest.mark.bad_input
def test_an_unknown_granularity_is_a_value_error():
    with raises(ValueError, match=r"\bgranularity\b", valid=lambda: quantize_activations(torch.ones(2, 4), "tensor")):
        quantize_activations(torch.ones(2, 4), "channel")


@pytest.mark.bad_input
def test_nan_activations_are_a_value_error():
    with raises(ValueError, match=r"\bNaN\b", valid=lambda: quantize_activations(torch.tensor([[1.0, 2.0]]))):
        quantize_activations(torch.tensor([[1.0, float("nan")]]))


@pytest.mark.bad_input
def test_empty_activations_are_a_value_error():
    with raises(ValueError, match=r"\bx\b", valid=lambda: quantize_activations(torch.ones(1, 4))):
        quantize_activations(torch.ones(0, 4))


def test_the_int8_product_is_exact_in_int32():
    a, b = int8((7, 300), 0), int8((33, 300), 1)
    truth = (a.long() @ b.long().T).to(torch.int32)  # int64 arithmetic: the integer answer
    expect_tensor_equal(int8_matmul_exact(a, b), truth, "emulated a · bᵀ")
    expect_tensor(int8_matmul_exact(a, b), "emulated a · bᵀ", dtype=torch.int32)


@pytest.mark.parametrize("k", [1024, 2500])
def test_the_emulation_is_exact_at_the_extremes_of_int8(k):
    """−128 · −128 summed over a whole chunk of 1024 is 2²⁴, float32's last exact integer; K = 2500 spans three
    chunks. torch._int_mm (the CPU always runs it) is the truth."""
    a, b = int8((3, k), 4), int8((5, k), 5)
    a[0, :], b[0, :] = -128, -128  # the largest sum
    a[1, :], b[1, :] = -128, 127  # the most negative
    expect_tensor_equal(int8_matmul_exact(a, b), torch._int_mm(a, b.T), f"emulated a · bᵀ, K={k}")


def test_the_emulation_multiplies_in_float32_chunks_of_at_most_1024(calls_to):
    calls = calls_to("aten.mm")
    int8_matmul_exact(int8((2, 3000), 6), int8((4, 3000), 7))
    expect_equal(sorted({str(c.args[0].dtype) for c in calls}), ["torch.float32"], "dtypes of the emulation's matmuls")
    expect_at_most(max(c.args[0].shape[1] for c in calls), 1024, "the longest K of one float32 matmul")


@pytest.mark.parametrize("rows", [1, 17, 64])
def test_the_fast_int8_matmul_equals_the_emulation_bit_for_bit(rows):
    a, b = int8((rows, 256), 2), int8((48, 256), 3)
    a[0, :] = -127  # extremes: the largest sums
    b[0, :] = -127
    got = int8_matmul(a, b)
    expect_tensor(got, "int8_matmul", shape=(rows, 48), dtype=torch.int32)
    expect_tensor_equal(got, int8_matmul_exact(a, b), "int8_matmul against the exact emulation")


@pytest.mark.bad_input
def test_the_int8_matmul_takes_int8_only():
    with raises(TypeError, match=r"\bint8\b", valid=lambda: int8_matmul(int8((2, 4), 0), int8((3, 4), 1))):
        int8_matmul(torch.ones(2, 4), torch.ones(3, 4))
    with raises(TypeError, match=r"\bint8\b",
                valid=lambda: int8_matmul(int8((2, 4), 0), int8((3, 4), 1))):  # one int8 operand is not enough
        int8_matmul(int8((2, 4), 0), torch.ones(3, 4))


@pytest.mark.bad_input
@pytest.mark.parametrize(("a_shape", "b_shape"), [((2, 4, 1), (3, 4)), ((2, 4), (4,)), ((2, 4), (3, 5))])
def test_the_int8_matmul_wants_m_by_k_and_n_by_k(a_shape, b_shape):
    with raises(ValueError, match=r"\bshapes\b", valid=lambda: int8_matmul(int8((2, 4), 0), int8((3, 4), 1))):
        int8_matmul(int8(a_shape, 0), int8(b_shape, 1))


def test_where_torch_int_mm_runs():
    # One table, not one test per case: an answer that always says no (or always yes) gets half of them right.
    for device, m, k, n, runs in [
        ("cpu", 1, 3, 5, True),  # the CPU takes any shape
        (torch.device("cpu"), 16, 64, 64, True),
        ("cuda", 17, 64, 64, True),
        ("cuda:0", 17, 8, 8, True),
        ("cuda", 16, 64, 64, False),  # CUDA wants more than 16 rows …
        ("cuda", 17, 60, 64, False),  # … and k, n multiples of 8
        ("cuda", 17, 64, 60, False),
        ("meta", 32, 64, 64, False),  # and no other device has it
    ]:
        expect_equal(int_mm_runs(device, m, k, n), runs, f"int_mm_runs({device!r}, m={m}, k={k}, n={n})")


def test_where_torch_int_mm_does_not_run_the_emulation_answers(monkeypatch):
    asked = []

    def int_mm_runs(device, m, k, n):  # takes the arguments by position or by name
        asked.append((device, m, k, n))
        return False

    monkeypatch.setattr(ex5_7, "int_mm_runs", int_mm_runs)
    a, b = int8((3, 64), 4), int8((5, 64), 5)
    expect_tensor_equal(int8_matmul(a, b), (a.long() @ b.long().T).to(torch.int32), "int8_matmul without _int_mm")
    expect_equal([(torch.device(d), m, k, n) for d, m, k, n in asked], [(a.device, 3, 64, 5)],
                 "int_mm_runs asked about (device, M, K, N)")


def test_the_w8a8_state_is_int8_weights_and_float32_channel_scales():
    linear = nn.Linear(128, 96, bias=True)
    state = W8A8Linear.from_linear(linear).state_dict()
    expect_equal(sorted(state), ["bias", "qweight", "weight_scale"], "state_dict keys")
    expect_tensor(state["qweight"], "qweight", shape=(96, 128), dtype=torch.int8)
    expect_tensor(state["weight_scale"], "weight_scale", shape=(96,), dtype=torch.float32)


@pytest.mark.parametrize("granularity", ["token", "tensor"])
def test_the_w8a8_forward_is_the_integer_product_rescaled(granularity):
    w, x = weight(), activations_with_outliers()[:40].reshape(4, 10, 128)  # leading dims kept
    got = W8A8Linear.from_weight(w, granularity=granularity)(x)
    expect_tensor(got, "output", shape=(4, 10, 96), dtype=torch.float32)
    # Same integers, same scales: only float32 rounding of the final rescale differs.
    expect_tensor_close(got, w8a8_output(x.reshape(40, 128), w, granularity).reshape(4, 10, 96),
                        f"{granularity} W8A8 output", rtol=1e-5, atol=1e-6)


@pytest.mark.bad_input
def test_a_w8a8_layer_is_per_token_and_bias_free_by_default():
    layer = W8A8Linear(128, 96)
    expect_equal(layer.granularity, "token", "default granularity")
    assert layer.bias is None, "W8A8Linear(…) 默认没有 bias / has no bias by default"
    with raises(ValueError, match=r"\bgranularity\b", valid=lambda: W8A8Linear(128, 96, "tensor")):
        W8A8Linear(128, 96, "channel")


def test_the_w8a8_forward_adds_the_bias_in_float():
    w, x, bias = weight(), activations_with_outliers()[:16], torch.linspace(-1, 1, 96)
    got = W8A8Linear.from_weight(w, bias)(x)
    expect_tensor_close(got, w8a8_output(x, w, "token") + bias, "W8A8 output with bias", rtol=1e-5, atol=1e-6)


def test_the_output_comes_back_in_the_inputs_dtype():
    got = W8A8Linear.from_weight(weight())(activations_with_outliers()[:8].bfloat16())
    expect_tensor(got, "output", dtype=torch.bfloat16)


def test_smoothing_scales_follow_the_formula():
    act, wmax = torch.tensor([1.0, 16.0, 4.0]), torch.tensor([0.25, 1.0, 4.0])
    expect_tensor_close(smoothing_scales(act, wmax, 0.5), torch.tensor([2.0, 4.0, 1.0]), "s at α = 0.5", atol=0,
                        rtol=1e-6)
    expect_tensor_close(smoothing_scales(act, wmax, 0.0), 1 / wmax, "s at α = 0 (1 / max|W_j|)", atol=0, rtol=1e-6)


@pytest.mark.bad_input
@pytest.mark.parametrize("alpha", [-0.1, 1.5, True])  # True is a bool, not an α (though True == 1)
def test_alpha_outside_zero_one_is_a_value_error(alpha):
    with raises(ValueError, match=r"\balpha\b",
                valid=lambda: [smoothing_scales(torch.ones(3), torch.ones(3), a) for a in (0, 1.0)]):
        smoothing_scales(torch.ones(3), torch.ones(3), alpha)


@pytest.mark.bad_input
def test_smoothing_maxima_of_different_shapes_are_a_value_error():
    with raises(ValueError, match=r"\bact_absmax\b", valid=lambda: smoothing_scales(torch.ones(3), torch.ones(3), 0.5)):
        smoothing_scales(torch.ones(3), torch.ones(4), 0.5)


def test_folding_leaves_the_float_model_unchanged():
    model = tiny_llama()
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids)
        block = model.layers[0]
        s = torch.rand(64, generator=torch.Generator().manual_seed(1)) * 4 + 0.25
        fold_smoothing(block.input_layernorm, [block.self_attn.q_proj, block.self_attn.k_proj,
                                               block.self_attn.v_proj], s)
        fold_smoothing(block.mlp.up_proj, [block.mlp.down_proj], torch.rand(128) + 0.5)
        expect_tensor_close(model(ids), expected, "logits after folding", atol=1e-5, rtol=1e-4)
    assert not torch.allclose(block.input_layernorm.weight, torch.ones(64)), "the norm's weight should change"


def fold_linear_into_linear() -> None:
    """The valid twin of the bad folds below."""
    with torch.no_grad():
        fold_smoothing(nn.Linear(4, 4), [nn.Linear(4, 4)], torch.ones(4))


@pytest.mark.bad_input
def test_folding_into_anything_but_a_norm_or_linear_is_a_type_error():
    with raises(TypeError, match=r"\bprevious\b", valid=lambda: fold_linear_into_linear()):
        fold_smoothing(nn.ReLU(), [nn.Linear(4, 4)], torch.ones(4))


def test_the_search_picks_the_alpha_with_the_least_w8a8_error():
    x, w = activations_with_outliers(), weight()
    errors = {}
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        s = smoothing_scales(x.abs().amax(0), w.abs().amax(0), alpha)
        errors[alpha] = (w8a8_output(x / s, w * s, "tensor") - x @ w.T).pow(2).sum().item()
    alpha, s = search_alpha([w], x, "tensor", alphas=(0.0, 0.25, 0.5, 0.75, 1.0))
    expect_equal(alpha, min(errors, key=errors.get), f"chosen α (errors per α: {errors})")
    expect_tensor(s, "s", shape=(128,))


def test_smoothing_beats_naive_w8a8_on_outlier_activations():
    x, w = activations_with_outliers(), weight()
    _, s = search_alpha([w], x, "tensor")
    smooth = relative_error(w8a8_output(x / s, w * s, "tensor"), x @ w.T)
    naive = relative_error(w8a8_output(x, w, "tensor"), x @ w.T)
    # Measured: 0.012 smoothed against 0.063 naive; half leaves a wide margin.
    expect_at_most(smooth, 0.5 * naive, f"relative error with the searched s (naive W8A8: {naive:.4f})")


def test_the_search_sums_the_error_over_every_linear_sharing_the_input():
    x, small, loud = activations_with_outliers(), weight(), weight(seed=2)
    loud[:, :64] *= 20  # a layer whose own weight columns also have outliers: it pulls α down
    together, _ = search_alpha([small, loud], x, "tensor")
    alone, _ = search_alpha([small], x, "tensor")
    assert together != alone, f"α for both layers ({together}) should differ from α for the first alone ({alone})"


def test_swap_linears_replaces_every_block_linear():
    model = tiny_llama()
    expect_equal(swap_linears(model.layers, "token"), 14, "layers swapped (2 blocks × 7 linears)")
    kinds = {type(m).__name__ for n, m in model.named_modules() if n.endswith("_proj")}
    expect_equal(kinds, {"W8A8Linear"}, "types of the *_proj layers")
    assert type(model.lm_head) is nn.Linear


def test_swap_linears_skips_the_layers_named_in_skip():
    model = tiny_llama()
    expect_equal(swap_linears(model, "token", skip=("lm_head", "self_attn")), 6, "layers swapped (2 blocks × 3 mlp)")
    assert type(model.layers[0].self_attn.q_proj) is nn.Linear, "self_attn 被 skip / skipped: stays nn.Linear"


def test_swap_linears_skips_lm_head_and_is_per_token_by_default():
    model = tiny_llama()
    expect_equal(swap_linears(model), 14, "layers swapped in the whole model (lm_head skipped)")
    assert type(model.lm_head) is nn.Linear, "lm_head 默认保持浮点 / lm_head stays float by default"
    expect_equal({m.granularity for m in model.modules() if isinstance(m, W8A8Linear)}, {"token"}, "granularity")


def loud_tiny_llama() -> nn.Module:
    model = tiny_llama()
    with torch.no_grad():
        for block in model.layers:  # three loud channels in what the norms hand the linears, as in LLMs
            block.input_layernorm.weight[[3, 17, 40]] *= 30
            block.post_attention_layernorm.weight[[3, 17, 40]] *= 30
    return model


def test_smoothquant_keeps_the_tiny_models_logits_closer_than_naive_w8a8():
    model = loud_tiny_llama()
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids)
        naive = copy.deepcopy(model)
        swap_linears(naive.layers, "tensor")
        smooth = copy.deepcopy(model)
        info = smoothquant_model(smooth, ids, "tensor")
        naive_error, smooth_error = relative_error(naive(ids), expected), relative_error(smooth(ids), expected)
    expect_equal(len(info["alphas"]), 6, "α chosen (2 blocks × 3 places)")
    assert isinstance(smooth.layers[1].mlp.down_proj, W8A8Linear)
    # Measured: 0.060 smoothed against 0.124 naive.
    expect_at_most(smooth_error, 0.5 * naive_error, f"relative logit error (naive W8A8: {naive_error:.4f})")


@pytest.mark.bad_input
def test_a_model_without_rms_norms_is_a_type_error():
    model = tiny_llama()
    model.layers[1].input_layernorm = nn.LayerNorm(64)
    with raises(TypeError, match=r"\bRMSNorm\b",
                valid=lambda: smoothquant_model(tiny_llama(), torch.zeros(1, 8, dtype=torch.long))):
        smoothquant_model(model, torch.zeros(1, 8, dtype=torch.long))


@pytest.mark.bad_input
def test_smoothquant_takes_only_known_granularities():
    with raises(ValueError, match=r"\bgranularity\b",
                valid=lambda: smoothquant_model(tiny_llama(), torch.zeros(1, 8, dtype=torch.long), "tensor")):
        smoothquant_model(tiny_llama(), torch.zeros(1, 8, dtype=torch.long), "channel")


@pytest.mark.slow
def test_on_the_real_model_smoothquant_halves_naive_w8a8s_kl(smollm2, smollm2_reference, record_property,
                                                             monkeypatch):
    from kata import cpu
    from kata.evaluate import calibration_windows, evaluate

    if not cpu.has_fast_int8():  # without VNNI torch._int_mm is 78× slower; the emulation gives the same integers
        monkeypatch.setattr(ex5_7, "int_mm_runs", lambda *args: False)
    ids, baseline = smollm2_reference
    naive = copy.deepcopy(smollm2)
    swap_linears(naive.layers, "token")
    naive_result = evaluate(naive, ids, baseline)
    smoothquant_model(smollm2, calibration_windows(32)[::16], "token")
    kinds = {type(m).__name__ for n, m in smollm2.layers.named_modules() if n.endswith("_proj")}
    expect_equal(kinds, {"W8A8Linear"}, "types of the *_proj layers of the SmoothQuant model measured")
    ours = evaluate(smollm2, ids, baseline)
    record_property("measured", f"5.7 W8A8 per-token KL: SmoothQuant {ours['kl']:.4f}, naive "
                                f"{naive_result['kl']:.4f}; perplexity {ours['ppl']:.2f}")
    expect_at_most(ours["kl"], 0.5 * naive_result["kl"], f"SmoothQuant KL (naive W8A8: {naive_result['kl']:.4f})")


def test_folding_into_a_linear_with_bias_keeps_its_function():
    g = torch.Generator().manual_seed(4)
    first, second = nn.Linear(8, 6), nn.Linear(6, 3)
    x, s = torch.randn(5, 8, generator=g), 0.5 + torch.rand(6, generator=g)
    with torch.no_grad():
        before = second(first(x))
        weight, bias, following = first.weight.clone(), first.bias.clone(), second.weight.clone()
        fold_smoothing(first, [second], s)
        # The factors are in the weights, one float32 rounding each: 1/s in the output rows and the bias, s in
        # the following columns.
        expect_tensor_close(first.weight, weight / s[:, None], "the Linear's weight after folding", atol=0,
                            rtol=1e-6)
        expect_tensor_close(first.bias, bias / s, "its bias after folding", atol=0, rtol=1e-6)
        expect_tensor_close(second.weight, following * s, "the following weight after folding", atol=0, rtol=1e-6)
        expect_tensor_close(second(first(x)), before, "output after folding into a Linear with bias", atol=1e-5)


@pytest.mark.bad_input
def test_the_fold_type_error_names_what_it_was_given():
    with raises(TypeError, valid=lambda: fold_linear_into_linear()) as err:
        fold_smoothing(nn.ReLU(), [nn.Linear(4, 4)], torch.ones(4))
    assert "ReLU" in str(err.value), f"the message should name the type it got: {err.value}"


def test_the_alpha_search_is_per_token_by_default():
    x, w = activations_with_outliers(), weight()
    expect_equal(search_alpha([w], x)[0], search_alpha([w], x, "token")[0], "default α")


def test_smoothquant_reports_the_alphas_it_chose_and_swaps_in_its_granularity():
    model = loud_tiny_llama()
    info = smoothquant_model(model, torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(5)),
                             "tensor", alphas=(0.2, 0.7))
    expect_equal(len(info["alphas"]), 6, "α per place (2 blocks × 3 places)")
    assert set(info["alphas"]) <= {0.2, 0.7}, f"every α must come from alphas: {info['alphas']}"
    expect_equal({m.granularity for m in model.modules() if isinstance(m, W8A8Linear)}, {"tensor"}, "granularity")
