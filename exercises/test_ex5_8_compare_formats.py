"""Tests for practice (c) — NF4, FP8 and the comparison of formats on one model. 测试：格式对比。"""

import re

import pytest
import torch
from torch import nn

from exercises.ex5_8_compare_formats import (
    Format,
    FP8Linear,
    NF4Linear,
    compare_formats,
    nf4_codebook,
)
from kata.harness.check import expect_at_most, expect_close, expect_equal, expect_tensor, expect_tensor_close, raises
from kata.llama import tiny_llama
from kata.oracles import rtn

# QLoRA (Dettmers et al., 2023), appendix E: the NF4 data type's 16 values, as published (4 decimals).
# The keys of a row: the contract, written here, never read from the answer.
FORMAT_KEYS = ("format", "bits_per_weight", "weight_bytes", "ppl", "kl", "tokens_per_s", "note")

PUBLISHED_NF4 = [-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0,
                 0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0]


def linear(in_features=256, out_features=96, seed=0, bias=False) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.normal_(layer.weight, std=0.02)
    return layer


def linear_with(w: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    layer.weight.data = w.clone()
    return layer


def mse(got, expected) -> float:
    return (got - expected).pow(2).mean().item()


def test_the_nf4_codebook_is_qloras_table():
    book = nf4_codebook()
    expect_tensor(book, "nf4_codebook()", shape=(16,), dtype=torch.float32)
    # The published values are rounded to 4 decimals: half a unit of the last place (+ float32) apart at most.
    expect_tensor_close(book, torch.tensor(PUBLISHED_NF4), "nf4_codebook()", atol=6e-5)
    expect_equal(book[7].item(), 0.0, "the codebook's zero (exact)")


def test_nf4_state_is_packed_codes_and_fp16_absmax_per_group():
    state = NF4Linear.from_linear(linear(), group_size=64).state_dict()
    expect_equal(sorted(state), ["absmax", "qweight"], "state_dict keys (the codebook is a constant)")
    expect_tensor(state["qweight"], "qweight", shape=(96, 128), dtype=torch.uint8)
    expect_tensor(state["absmax"], "absmax", shape=(96, 4), dtype=torch.float16)


def test_nf4_rounds_each_weight_to_the_nearest_codebook_value_times_absmax():
    w = linear().weight.detach()
    layer = NF4Linear.from_linear(linear(), group_size=64)
    absmax = w.reshape(96, 4, 64).abs().amax(-1).half().float()
    normalised = w.reshape(96, 4, 64) / absmax[..., None]
    book = torch.tensor(PUBLISHED_NF4)
    expected = book[(normalised[..., None] - book).abs().argmin(-1)] * absmax[..., None]
    # The published values carry 4 decimals, so a weight within 5e-5 of a midpoint may round the other way
    # here (about 0.1 % of them); any other disagreement is a wrong codebook, normalisation or packing.
    got = layer.dequantized_weight().reshape(96, 4, 64)
    differ = ((got - expected).abs() > 1e-3 * absmax[..., None]).float().mean().item()
    expect_at_most(differ, 0.005, "fraction of weights on another codebook value than the nearest")


def test_nf4_beats_symmetric_int4_on_normal_weights():
    # NF4's point: for normally distributed weights its levels sit where the weights are.
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(3))
    nf4 = mse(NF4Linear.from_linear(linear_with(w), 64).dequantized_weight(), w)
    int4 = mse(rtn(w, 4, 64, symmetric=True), w)
    # Measured: NF4 0.0089 against symmetric INT4 0.0114 (× 0.78).
    expect_at_most(nf4, 0.9 * int4, f"NF4 g64 MSE (symmetric INT4 g64: {int4:.4f})")


def test_nf4_forward_is_x_times_the_dequantized_weight():
    layer = NF4Linear.from_linear(linear(), 64)
    x = torch.randn(3, 5, 256, generator=torch.Generator().manual_seed(1))
    expect_tensor_close(layer(x), x @ layer.dequantized_weight().T, "NF4 output", atol=1e-6)
    expect_tensor(layer(x.bfloat16()), "output", shape=(3, 5, 96), dtype=torch.bfloat16)


@pytest.mark.bad_input
def test_nf4_needs_a_group_size_that_divides_in_features():
    with raises(ValueError, match=r"\bgroup_size\b", valid=lambda: NF4Linear(576, 64, group_size=64)):
        NF4Linear(576, 64, group_size=128)


def test_fp8_stores_e4m3_weights_and_a_float32_scale_per_row():
    state = FP8Linear.from_linear(linear()).state_dict()
    expect_equal(sorted(state), ["scale", "weight"], "state_dict keys")
    expect_tensor(state["weight"], "weight", shape=(96, 256), dtype=torch.float8_e4m3fn)
    expect_tensor(state["scale"], "scale", shape=(96, 1), dtype=torch.float32)


def test_fp8_puts_each_rows_largest_weight_on_448():
    w = linear().weight.detach()
    layer = FP8Linear.from_linear(linear())
    expect_tensor_close(layer.weight.float().abs().amax(1), torch.full((96,), 448.0), "max |code| per row", atol=0)
    expect_tensor_close(layer.dequantized_weight().abs().amax(1), w.abs().amax(1), "max |ŵ| per row", atol=0,
                        rtol=1e-6)


def test_fp8_rounding_error_is_within_e4m3s_half_step():
    # E4M3 keeps 3 mantissa bits: a normal value rounds within 2⁻⁴ of itself; values near 0 (subnormal,
    # below 2⁻⁶·scale) within 2⁻¹⁰·scale.
    w = linear().weight.detach()
    layer = FP8Linear.from_linear(linear())
    bound = torch.maximum(w.abs() * 2**-4, layer.scale * 2**-10) * 1.0001
    excess = ((layer.dequantized_weight() - w).abs() - bound).max().item()
    expect_at_most(excess, 0.0, "largest |ŵ − w| beyond E4M3's half step")


@pytest.mark.bad_input
@pytest.mark.parametrize("cls", [FP8Linear, NF4Linear], ids=["FP8Linear", "NF4Linear"])
def test_fp8_and_nf4_refuse_a_bias_and_say_which_layer(cls):
    with raises(ValueError, match=r"\bbias\b", valid=lambda: cls.from_linear(linear())) as error:
        cls.from_linear(linear(bias=True))
    assert re.search(rf"\b{cls.__name__}\b", str(error.value)), f"the message should name {cls.__name__}: {error.value}"


def test_nf4_from_linear_keeps_the_group_size_it_is_given():
    state = NF4Linear.from_linear(linear(), 32).state_dict()
    expect_tensor(state["absmax"], "absmax for group_size=32", shape=(96, 8), dtype=torch.float16)


class Int8Holder(nn.Module):
    """A test format: the weight rounded to int8 per tensor, 1 byte a weight."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        scale = layer.weight.detach().abs().max() / 127
        self.register_buffer("q", torch.round(layer.weight.detach() / scale).to(torch.int8))
        self.scale = scale.item()

    def forward(self, x):
        return x @ (self.q.to(x.dtype) * self.scale).T


def swap(model: nn.Module, make) -> None:
    for block in model.layers:
        for parent in (block.self_attn, block.mlp):
            for name, child in list(parent.named_children()):
                setattr(parent, name, make(child))


def zero_weights(model: nn.Module) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("_proj.weight"):
                param.zero_()


def formats() -> list:
    return [Format("baseline", 32, None, torch.float32),
            Format("broken", 16, zero_weights, torch.float32, no_speed="no kernel"),
            Format("int8 per tensor", 8, lambda m: swap(m, Int8Holder), torch.float32)]


IDS = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))


def test_each_format_gets_one_row_with_every_key():
    rows = compare_formats(tiny_llama, formats(), IDS)
    expect_equal([r["format"] for r in rows], ["baseline", "broken", "int8 per tensor"], "row formats")
    expect_equal([sorted(r) for r in rows], [sorted(FORMAT_KEYS)] * 3, "keys of each row")
    expect_equal([r["bits_per_weight"] for r in rows], [32, 16, 8], "bits_per_weight (from each Format)")


def test_the_baseline_row_is_the_float_model_itself():
    from kata.evaluate import evaluate

    rows = compare_formats(tiny_llama, formats(), IDS)
    expect_close(rows[0]["ppl"], evaluate(tiny_llama(), IDS)["ppl"], "baseline perplexity", rel=1e-6)
    expect_at_most(abs(rows[0]["kl"]), 1e-6, "baseline KL to itself")


def test_every_format_starts_from_a_fresh_model():
    rows = compare_formats(tiny_llama, formats(), IDS)
    # "broken" zeroed its copy's weights; the next format must not see that (its KL stays small).
    expect_at_most(rows[2]["kl"], 0.1 * rows[1]["kl"], f"int8 KL (the broken format's: {rows[1]['kl']:.4f})")


def test_weight_bytes_are_measured_on_the_quantized_model():
    model = tiny_llama()
    float_bytes = sum(m.weight.nbytes for n, m in model.named_modules() if n.endswith("_proj"))
    rows = compare_formats(tiny_llama, formats(), IDS)
    expect_equal(rows[0]["weight_bytes"], float_bytes, "float32 linear bytes")
    expect_equal(rows[2]["weight_bytes"], float_bytes // 4, "int8 linear bytes (one byte a weight)")


def test_speed_is_measured_unless_the_format_says_why_not():
    timed = []
    rows = compare_formats(tiny_llama, formats(), IDS, speed=lambda model: timed.append(model) or 123.0)
    expect_equal([r["tokens_per_s"] for r in rows], [123.0, None, 123.0], "tokens_per_s")
    expect_equal([r["note"] for r in rows], ["", "no kernel", ""], "notes")
    expect_equal(len(timed), 2, "speed() calls")
    assert all(isinstance(m, nn.Module) for m in timed), f"speed() must get the quantized model, got {timed}"


def test_no_speed_function_means_no_speed_column():
    rows = compare_formats(tiny_llama, formats()[:1], IDS)
    expect_equal(rows[0]["tokens_per_s"], None, "tokens_per_s without a speed function")


def test_progress_names_each_format():
    said = []
    compare_formats(tiny_llama, formats(), IDS, progress=said.append, speed=lambda model: 1.0)
    assert all(isinstance(line, str) for line in said), f"progress lines must be text: {said}"
    for name in ("baseline", "broken", "int8 per tensor"):
        assert any(name in line for line in said), f"no progress line names {name!r}: {said}"
    count = len(formats())
    assert any(f"(1/{count})" in line for line in said) and any(f"({count}/{count})" in line for line in said), \
        f"progress should count the formats 1/{count} … {count}/{count}: {said}"


def test_the_rest_of_the_model_runs_in_the_formats_dtype():
    seen = []
    fmt = Format("bf16", 16, lambda m: seen.append(m), torch.bfloat16)
    compare_formats(tiny_llama, [fmt], IDS)
    expect_equal(seen[0].embed_tokens.weight.dtype, torch.bfloat16, "embedding dtype after the format")


@pytest.mark.bad_input
def test_no_formats_or_repeated_names_are_value_errors():
    with raises(ValueError, match=r"\bformats\b", valid=lambda: compare_formats(tiny_llama, formats()[:1], IDS)):
        compare_formats(tiny_llama, [], IDS)
    with raises(ValueError, match=r"\bformats\b",
                valid=lambda: compare_formats(tiny_llama, [Format("a", 4), Format("b", 8)], IDS)):
        compare_formats(tiny_llama, [Format("a", 4), Format("a", 8)], IDS)


def test_given_baseline_log_probs_are_used_instead_of_recomputed():
    from kata.evaluate import log_probs

    other = log_probs(tiny_llama(seed=1), IDS)  # a different model's: every KL becomes large
    rows = compare_formats(tiny_llama, formats()[:1], IDS, baseline=other)
    assert rows[0]["kl"] > 0.01, f"KL against the given baseline should be large, got {rows[0]['kl']:.5f}"


@pytest.mark.bad_input
def test_formats_must_be_format_objects():
    with raises(TypeError, match=r"\bformats\b",
                valid=lambda: compare_formats(tiny_llama, formats()[:1], IDS)) as error:
        compare_formats(tiny_llama, ["W4A16 RTN g64"], IDS)
    assert re.search(r"\bstr\b", str(error.value)), f"the message should say what it got (str): {error.value}"


def test_nf4_groups_are_64_wide_by_default():
    layer = nn.Linear(128, 8, bias=False)
    expect_equal((NF4Linear(128, 8).group_size, NF4Linear.from_linear(layer).group_size), (64, 64),
                 "NF4Linear group_size by default")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fp8_forward_multiplies_by_the_dequantized_weight_in_the_inputs_dtype(dtype):
    g = torch.Generator().manual_seed(3)
    layer = FP8Linear.from_linear(nn.Linear(64, 16, bias=False))
    x = torch.randn(5, 64, generator=g).to(dtype)
    got = layer(x)
    expect_tensor(got, "FP8Linear output", shape=(5, 16), dtype=dtype)
    expect_tensor_close(got.float(), (x @ layer.dequantized_weight().to(dtype).T).float(), "FP8Linear output",
                        atol=1e-6, rtol=1e-6)
