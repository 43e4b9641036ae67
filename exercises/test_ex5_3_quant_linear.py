"""Tests for practice (a)/(c) — the weight-only quantized Linear. 测试：只量化权重的线性层。"""

import copy

import pytest
import torch
from torch import nn

from exercises.ex5_3_quant_linear import QuantLinear, quantize_model
from kata.harness.check import (
    expect_at_most,
    expect_equal,
    expect_tensor,
    expect_tensor_close,
    expect_tensor_equal,
    raises,
)
from kata.llama import tiny_llama, weight_bytes
from kata.oracles import dequantize_groups, group_qparams, quantize_groups, quantize_to_grid


def linear(in_features=256, out_features=96, bias=False, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.normal_(layer.weight, std=0.02)
    return layer


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm()).item()


def inputs(in_features=256, seed=1) -> torch.Tensor:
    return torch.randn(4, 7, in_features, generator=torch.Generator().manual_seed(seed))


def test_w8_state_holds_int8_codes_and_fp16_channel_scales_only():
    state = QuantLinear.from_linear(linear(), num_bits=8).state_dict()
    expect_equal(sorted(state), ["qweight", "scale"], "state_dict keys")
    expect_tensor(state["qweight"], "qweight", shape=(96, 256), dtype=torch.int8)
    expect_tensor(state["scale"], "scale", shape=(96, 1), dtype=torch.float16)


def test_w4_state_holds_packed_codes_fp16_scales_and_uint8_zero_points():
    state = QuantLinear.from_linear(linear(bias=True), num_bits=4, group_size=64).state_dict()
    expect_equal(sorted(state), ["bias", "qweight", "scale", "zero_point"], "state_dict keys")
    expect_tensor(state["qweight"], "qweight", shape=(96, 128), dtype=torch.uint8)
    expect_tensor(state["scale"], "scale", shape=(96, 4), dtype=torch.float16)
    expect_tensor(state["zero_point"], "zero_point", shape=(96, 4), dtype=torch.uint8)
    expect_tensor(state["bias"], "bias", shape=(96,), dtype=torch.float16)


@pytest.mark.parametrize(("num_bits", "group_size", "bound"), [(8, None, 0.01), (4, 32, 0.10), (4, 64, 0.12)])
def test_outputs_stay_close_to_the_float_layer(num_bits, group_size, bound):
    # Rounding noise is step/√12 per weight, relative to a Gaussian weight's σ: 8-bit per channel
    # (step ≈ 5σ/255) ≈ 0.6 %; 4-bit asymmetric per group (step ≈ 4.5σ/15 for 32 weights) ≈ 8 %.
    float_layer = linear(bias=True)
    x = inputs()
    layer = QuantLinear.from_linear(float_layer, num_bits, group_size)
    expect_equal(type(layer).__name__, "QuantLinear", "the type QuantLinear.from_linear returns")
    err = relative_error(layer(x), float_layer(x).detach())
    expect_at_most(err, bound, f"W{num_bits} g{group_size}: relative output error")


def test_w4_forward_is_dequantize_then_matmul_of_group_codes():
    float_layer = linear()
    x = inputs()
    q, scale, zero = quantize_groups(float_layer.weight.detach(), 4, 64)
    expected = x @ dequantize_groups(q, scale, zero).T
    got = QuantLinear.from_linear(float_layer, 4, 64)(x)
    # The stored fp16 scale moves a rare code by one step; 1 % of the output norm allows for that only.
    expect_at_most(relative_error(got, expected), 0.01, "relative distance to dequantize-then-matmul")


@pytest.mark.parametrize(("num_bits", "group_size", "symmetric"), [(8, None, True), (4, 64, False)])
def test_codes_are_rounded_with_the_scale_as_stored_in_fp16(num_bits, group_size, symmetric):
    w = linear().weight.detach()
    scale, zero = group_qparams(w, num_bits, group_size, symmetric=symmetric)
    scale = scale.half().float()  # what the fp16 buffer holds
    expected = dequantize_groups(quantize_to_grid(w, scale, zero, num_bits, symmetric=symmetric), scale, zero)
    # Codes taken with the float32 scale disagree with the stored one: some weights land one step away.
    got = QuantLinear.from_linear(linear(), num_bits, group_size).dequantized_weight()
    expect_tensor_close(got, expected, f"W{num_bits} ŵ from the stored codes and fp16 scales", atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])  # bf16: the fused CPU path; fp16: dequantize
def test_the_forward_keeps_the_input_dtype(dtype):
    layer = QuantLinear.from_linear(linear(), 4, 64)
    expect_tensor(layer(inputs().to(dtype)), "output", dtype=dtype)


def test_a_state_dict_reloads_into_a_fresh_layer():
    layer = QuantLinear.from_linear(linear(bias=True), 4, 32)
    fresh = QuantLinear(256, 96, num_bits=4, group_size=32, bias=True)
    fresh.load_state_dict(layer.state_dict())
    x = inputs()
    assert torch.equal(fresh(x), layer(x)), "the state alone must rebuild the layer"


def test_quantize_model_replaces_every_linear_but_the_skipped_ones():
    model = tiny_llama()
    info = quantize_model(model, 4, 32)
    expect_equal(info["layers"], 14, "layers replaced (2 blocks × 7 linears)")
    kinds = {type(m).__name__ for n, m in model.named_modules() if n.endswith("_proj")}
    expect_equal(kinds, {"QuantLinear"}, "types of the *_proj layers")
    assert type(model.lm_head) is nn.Linear and type(model.embed_tokens) is nn.Embedding


def test_the_skip_list_keeps_matching_layers_in_float():
    model = tiny_llama()
    quantize_model(model, 8, None, skip=("lm_head", "mlp"))
    assert type(model.layers[0].mlp.up_proj) is nn.Linear
    assert isinstance(model.layers[0].self_attn.q_proj, QuantLinear)


def test_measured_bytes_fall_as_the_formula_predicts():
    model = tiny_llama()
    linears = [m for n, m in model.named_modules() if n.endswith("_proj")]
    float_bytes = sum(m.weight.nbytes for m in linears)
    n = sum(m.weight.numel() for m in linears)
    info = quantize_model(model, 4, 32)
    expect_equal(info["bytes_before"], weight_bytes(tiny_llama()), "bytes_before")
    # Packed W4 g32: 4 bits + (16-bit scale + 8-bit zero point) / 32 per weight.
    expect_equal(info["bytes_after"], info["bytes_before"] - float_bytes + int(n * (4 + 24 / 32) / 8), "bytes_after")


@pytest.mark.parametrize(("num_bits", "bound"), [(8, 0.02), (4, 0.15)])
def test_the_quantized_tiny_model_keeps_its_logits_close(num_bits, bound):
    # Two blocks add the layers' noise (bounds as above, ×1.5 for accumulation through the residual stream).
    model = tiny_llama()
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids)
        quantized = copy.deepcopy(model)
        quantize_model(quantized, num_bits, 32)
        err = relative_error(quantized(ids), expected)
    kinds = {type(m).__name__ for n, m in quantized.named_modules() if n.endswith("_proj")}
    expect_equal(kinds, {"QuantLinear"}, f"W{num_bits}: types of the *_proj layers whose logits were measured")
    expect_at_most(err, bound, f"W{num_bits}: relative logit error")


@pytest.mark.bad_input
def test_num_bits_other_than_4_or_8_is_a_value_error():
    with raises(ValueError, match=r"\bnum_bits\b",
                valid=lambda: [QuantLinear.from_linear(linear(), num_bits=b) for b in (4, 8)]):
        QuantLinear.from_linear(linear(), num_bits=3)


@pytest.mark.bad_input
def test_a_group_size_that_does_not_divide_in_features_is_a_value_error():
    with raises(ValueError, match=r"\bgroup_size\b", valid=lambda: QuantLinear(576, 64, num_bits=4, group_size=64)):
        QuantLinear(576, 64, num_bits=4, group_size=128)


@pytest.mark.parametrize(("num_bits", "group_size", "kernel"), [(4, 64, "_weight_int4pack_mm_for_cpu"),
                                                                 (4, 32, "_weight_int4pack_mm_for_cpu"),
                                                                 (8, None, "_weight_int8pack_mm")])
@pytest.mark.parametrize(("in_features", "out_features", "leading"), [(256, 96, (1,)), (128, 64, (5,)),
                                                                      (64, 192, (3, 7))])
def test_bf16_on_cpu_runs_the_fused_kernel_and_matches_dequantize_then_matmul(
        calls_to, num_bits, group_size, kernel, in_features, out_features, leading):
    layer = QuantLinear.from_linear(linear(in_features, out_features, bias=True), num_bits, group_size)
    x = torch.randn(*leading, in_features, generator=torch.Generator().manual_seed(2)).bfloat16()
    expected = (x.float() @ layer.dequantized_weight().T + layer.bias.float())
    calls = calls_to(f"aten.{kernel}")
    got = layer(x)
    expect_equal(len(calls), 1, f"calls to torch.{kernel} in one bf16 forward")
    expect_tensor(got, "output", shape=(*leading, out_features), dtype=torch.bfloat16)
    # The kernels take bf16 operands and round the output to bf16: 2⁻⁸ relative per element at most,
    # about 0.4 %; 1 % of the output norm leaves room for that and nothing more (a wrong zero point is > 10 %).
    expect_at_most(relative_error(got.float(), expected), 0.01, "relative distance to dequantize-then-matmul")


@pytest.mark.parametrize(("num_bits", "group_size", "kernel"), [(4, 64, "_weight_int4pack_mm_for_cpu"),
                                                                 (8, None, "_weight_int8pack_mm")])
def test_the_bf16_output_is_the_fused_kernels_own_result_on_your_input(calls_to, num_bits, group_size, kernel):
    """The kernel's operands as the answer passed them, run again here: the output must be that result (plus the
    bias, reshaped), bit for bit, and its x must be the input's rows — a call on other rows proves nothing."""
    layer = QuantLinear.from_linear(linear(128, 64, bias=True), num_bits, group_size)
    x = torch.randn(3, 5, 128, generator=torch.Generator().manual_seed(3)).bfloat16()
    calls = calls_to(f"aten.{kernel}")
    got = layer(x)
    expect_equal(len(calls), 1, f"calls to torch.{kernel} in one bf16 forward")
    operands = calls[0].args
    expect_tensor_equal(operands[0], x.reshape(-1, 128), f"the rows torch.{kernel} was given (your x, reshaped)")
    again = getattr(torch, kernel)(*operands) + layer.bias.to(torch.bfloat16)
    expect_tensor_equal(got, again.reshape(3, 5, 64), f"output against torch.{kernel} run again on its operands")


def test_the_int4_weight_is_packed_once_not_on_every_call(calls_to):
    layer = QuantLinear.from_linear(linear(), 4, 64)
    calls = calls_to("aten._convert_weight_to_int4pack_for_cpu")
    x = inputs().bfloat16()
    for _ in range(3):
        layer(x)
    expect_equal(len(calls), 1, "calls to torch._convert_weight_to_int4pack_for_cpu over three forwards")


def test_float32_inputs_take_the_dequantize_path(calls_to):
    layer, x = QuantLinear.from_linear(linear(), 4, 64), inputs()
    calls = calls_to("aten._weight_int4pack_mm_for_cpu")
    got = layer(x)
    expect_equal(len(calls), 0, "fused kernel calls for a float32 input")
    # Outputs ≈ 0.3: float32 matmuls of the same operands differ by summation order only (≈ 1e-7 each).
    expect_tensor_close(got, x @ layer.dequantized_weight().T, "float32 output against x · ŵᵀ", atol=1e-5)


def test_the_defaults_are_4_bit_groups_of_64_without_bias():
    layer, float_layer = QuantLinear(256, 96), linear()
    expect_equal((layer.num_bits, layer.group_size, layer.bias), (4, 64, None), "QuantLinear(256, 96) settings")
    built = QuantLinear.from_linear(float_layer)
    expect_equal((built.num_bits, built.group_size), (4, 64), "from_linear defaults")
    model = nn.Sequential(linear(), nn.ReLU())
    quantize_model(model)
    expect_equal((model[0].num_bits, model[0].group_size), (4, 64), "quantize_model defaults")
