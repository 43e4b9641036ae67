"""Tests for practice (a) — INT4 packing, real bytes, torch's CPU INT4 format. 测试：INT4 打包与实测字节。"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from exercises.ex5_2_int4_packing import (
    int4_matmul_cpu,
    measure_weight_bytes,
    pack_int4,
    to_torch_int4_cpu,
    unpack_int4,
)
from kata.harness.check import expect_equal, expect_tensor, expect_tensor_close, expect_tensor_equal, raises
from kata.oracles import dequantize_groups, quantize_groups

HAS_CPU_INT4 = hasattr(torch, "_convert_weight_to_int4pack_for_cpu") and hasattr(torch, "_weight_int4pack_mm_for_cpu")


def test_the_worked_example_packs_into_one_byte():
    expect_tensor_equal(pack_int4(torch.tensor([1, -2], dtype=torch.int8)), torch.tensor([0xE1], dtype=torch.uint8),
                        "pack_int4([1, -2])")


def test_the_low_nibble_holds_the_even_element():
    expect_tensor_equal(pack_int4(torch.tensor([[3, 12, 15, 0]], dtype=torch.uint8)),
                        torch.tensor([[0xC3, 0x0F]], dtype=torch.uint8), "pack_int4 unsigned")


@pytest.mark.parametrize(("dtype", "values"), [(torch.int8, range(-8, 8)), (torch.uint8, range(16))])
def test_every_int4_value_round_trips_in_every_position(dtype, values):
    values = torch.tensor(list(values), dtype=dtype)
    pairs = torch.cartesian_prod(values, values)  # all 256 (even, odd) pairs
    packed = pack_int4(pairs)
    expect_tensor(packed, "packed", shape=(256, 1), dtype=torch.uint8)
    expect_tensor_equal(unpack_int4(packed, signed=dtype == torch.int8), pairs, "unpack(pack(q))")


@st.composite
def int4_codes(draw):
    """Codes of any INT4 value, signed or not, in a tensor of 1–3 dims whose last dim is even."""
    signed = draw(st.booleans())
    shape = (*draw(st.lists(st.integers(1, 4), max_size=2)), 2 * draw(st.integers(1, 8)))
    lo, hi = (-8, 7) if signed else (0, 15)
    values = draw(st.lists(st.integers(lo, hi), min_size=math.prod(shape), max_size=math.prod(shape)))
    return torch.tensor(values, dtype=torch.int8 if signed else torch.uint8).reshape(shape)


@given(q=int4_codes())
def test_any_codes_round_trip_and_halve_the_last_dim(q):
    shape = tuple(q.shape)
    packed = pack_int4(q)
    expect_tensor(packed, "packed", shape=(*shape[:-1], shape[-1] // 2), dtype=torch.uint8)
    expect_tensor_equal(unpack_int4(packed, signed=q.dtype == torch.int8), q, "unpack(pack(q))")
    expect_equal(packed.nbytes * 2, q.nbytes, "packed bytes × 2 vs one byte per value")


def test_unsigned_unpack_returns_the_nibbles_as_uint8():
    got = unpack_int4(torch.tensor([0xE1, 0x0F], dtype=torch.uint8), signed=False)
    expect_tensor(got, "unsigned unpack of [0xE1, 0x0F]", dtype=torch.uint8)
    expect_tensor_equal(got, torch.tensor([1, 14, 15, 0]), "unsigned unpack of [0xE1, 0x0F] (low nibble first)")


@pytest.mark.bad_input
def test_an_odd_last_dimension_is_a_value_error():
    with raises(ValueError, match=r"\beven\b", valid=lambda: pack_int4(torch.zeros(3, 4, dtype=torch.int8))):
        pack_int4(torch.zeros(3, 5, dtype=torch.int8))


@pytest.mark.bad_input
@pytest.mark.parametrize("q", [torch.tensor([8, 0], dtype=torch.int8), torch.tensor([-9, 0], dtype=torch.int8),
                               torch.tensor([16, 0], dtype=torch.uint8)])
def test_values_outside_int4_are_a_value_error(q):
    with raises(ValueError, match=r"\brange\b",
                valid=lambda: pack_int4(q.clamp(-8, 7) if q.is_signed() else q.clamp(0, 15))):
        pack_int4(q)


@pytest.mark.bad_input
def test_a_wider_integer_dtype_is_a_type_error():
    with raises(TypeError, match=r"\bq\b", valid=lambda: pack_int4(torch.zeros(4, dtype=torch.int8))):
        pack_int4(torch.zeros(4, dtype=torch.int32))


def test_measured_bytes_match_the_effective_bits_formula():
    out_features, in_features, group = 96, 384, 64
    w = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(0))
    got = measure_weight_bytes(w, quantize_groups, group_size=group)
    n = out_features * in_features
    # 1.1's formula: bits = storage bits + metadata bits / weights per scale.
    expected = {"fp16": n * 16 / 8,
                "int8": n * (8 + 16 / in_features) / 8,  # one fp16 scale per output channel
                "int4": n * (4 + (16 + 8) / group) / 8}  # fp16 scale + uint8 zero point per group
    expect_equal(got, {k: int(v) for k, v in expected.items()}, "measured bytes")
    expect_equal(measure_weight_bytes(w, quantize_groups), got, "measured bytes with the default group_size (64)")


@pytest.mark.skipif(not HAS_CPU_INT4, reason="this torch has no CPU INT4 ops / 此版本 torch 没有 CPU INT4 算子")
@pytest.mark.parametrize("group_size", [32, 64])
def test_torchs_cpu_int4_kernel_gives_the_same_product_as_dequantize_then_matmul(group_size):
    g = torch.Generator().manual_seed(group_size)
    w, x = torch.randn(64, 256, generator=g), torch.randn(5, 256, generator=g)
    q, scale, zero_point = quantize_groups(w, 4, group_size)
    packed, scales_and_zeros = to_torch_int4_cpu(q, scale, zero_point, group_size)
    expect_tensor(scales_and_zeros, "scales_and_zeros", shape=(256 // group_size, 64, 2))
    expected = x @ dequantize_groups(q, scale, zero_point).T
    # Same float32 arithmetic in another order: agreement to ~1e-5 of the outputs' size.
    expect_tensor_close(int4_matmul_cpu(x, packed, scales_and_zeros, group_size), expected, "x · ŵᵀ",
                        atol=1e-4 * expected.abs().max().item())


@pytest.mark.skipif(not HAS_CPU_INT4, reason="this torch has no CPU INT4 ops / 此版本 torch 没有 CPU INT4 算子")
def test_torchs_cpu_int4_kernel_takes_bfloat16_inputs_with_float32_scales():
    g = torch.Generator().manual_seed(5)
    w, x = torch.randn(64, 128, generator=g), torch.randn(3, 128, generator=g).bfloat16()
    q, scale, zero_point = quantize_groups(w, 4, 32)
    packed, scales_and_zeros = to_torch_int4_cpu(q, scale, zero_point, 32)  # float32 scales, bf16 x
    got = int4_matmul_cpu(x, packed, scales_and_zeros, 32)
    expect_tensor(got, "x · ŵᵀ", shape=(3, 64), dtype=torch.bfloat16)
    expected = x.float() @ dequantize_groups(q, scale, zero_point).T
    # bf16 keeps 8 significant bits: 1 % of the largest output is a few of its roundings.
    expect_tensor_close(got.float(), expected, "x · ŵᵀ in bf16", atol=1e-2 * expected.abs().max().item())


def test_signed_unpack_returns_int8():
    expect_tensor(unpack_int4(torch.tensor([0xF1], dtype=torch.uint8), signed=True), "unpack_int4(signed=True)",
                  dtype=torch.int8)


@pytest.mark.bad_input
def test_unpacking_anything_but_uint8_is_a_type_error_naming_packed():
    with raises(TypeError, match=r"\bpacked\b",
                valid=lambda: unpack_int4(torch.tensor([1], dtype=torch.uint8), signed=True)):
        unpack_int4(torch.tensor([1], dtype=torch.int8), signed=True)


@pytest.mark.bad_input
@pytest.mark.parametrize(("bad", "error"), [(torch.tensor([[1.0, float("nan")]]), ValueError),
                                            (torch.zeros(0, 4), ValueError),
                                            (torch.ones(2, 4, dtype=torch.int32), TypeError)])
def test_measure_weight_bytes_names_w_when_it_rejects_it(bad, error):
    with raises(error, match=r"\bw\b", valid=lambda: measure_weight_bytes(torch.randn(2, 64), quantize_groups)):
        measure_weight_bytes(bad, quantize_groups)

