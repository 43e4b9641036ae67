"""Tests for 2.1 · TODO 2 — per-tensor quantize / dequantize. 测试：逐张量量化与反量化。"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from exercises.ex2_1_per_tensor import dequantize_per_tensor, quantize_per_tensor
from kata.harness.check import (
    expect_at_most,
    expect_close,
    expect_tensor,
    expect_tensor_close,
    expect_tensor_equal,
    raises,
)


def test_quantize_per_tensor():
    """The chapter's own check: int8 codes, and a round trip within half a step. 章节自带的测试。"""
    torch.manual_seed(0)
    x = torch.randn(100)
    q, scale = quantize_per_tensor(x, num_bits=8)
    x_hat = dequantize_per_tensor(q, scale)
    expect_tensor(q, "q", dtype=torch.int8)
    expect_tensor(x_hat, "x_hat", shape=tuple(x.shape))
    step = x.abs().max().item() / 127  # the rule's step, not the answer's own: a huge scale and zero codes fail
    expect_at_most((x - x_hat).abs().max(), step / 2 + 1e-6, "max |x - x̂| (≤ scale / 2 = max|x| / 254)")


def test_the_worked_example_gives_these_codes_and_scale():
    q, scale = quantize_per_tensor(torch.tensor([-1.2, 0.5, 2.0]), num_bits=4)
    expect_close(scale, 2 / 7, "scale = max|x| / qmax = 2 / 7")
    expect_tensor_equal(q, torch.tensor([-4, 2, 7], dtype=torch.int8), "q")


@pytest.mark.parametrize("num_bits", [2, 3, 4, 8])
def test_the_largest_magnitude_maps_to_plus_or_minus_qmax(num_bits):
    qmax = 2 ** (num_bits - 1) - 1
    q, _ = quantize_per_tensor(torch.tensor([0.1, -3.0, 1.0]), num_bits=num_bits)
    expect_close(q[1], -qmax, f"code of -max|x| at {num_bits} bits (= -qmax)")


def test_codes_are_int8_with_the_input_shape():
    q, scale = quantize_per_tensor(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)))
    expect_tensor(q, "q", shape=(4, 6), dtype=torch.int8)
    expect_tensor(scale, "scale", shape=())


def test_dequantize_is_codes_times_scale():
    got = dequantize_per_tensor(torch.tensor([[-3, 0, 5]], dtype=torch.int8), torch.tensor(0.5))
    expect_tensor(got, "x_hat", shape=(1, 3), dtype=torch.float32)
    expect_tensor_close(got, torch.tensor([[-1.5, 0.0, 2.5]]), "x_hat", atol=0)


@given(values=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=64), num_bits=st.integers(2, 8))
def test_the_round_trip_error_is_at_most_half_a_step(values, num_bits):
    x = torch.tensor(values)
    q, scale = quantize_per_tensor(x, num_bits)
    err = (dequantize_per_tensor(q, scale) - x).abs().max()
    # Rounding to the nearest grid point misses by at most scale / 2; x / scale and q · scale each add at most
    # one float32 rounding of a value no larger than max|x|. The scale is the rule's (max|x| / qmax, at least
    # 1e-8), not the answer's own: a huge scale with zero codes must not pass.
    step = max(x.abs().max().item() / (2 ** (num_bits - 1) - 1), 1e-8)
    bound = step / 2 + 4 * torch.finfo(torch.float32).eps * x.abs().max().item()
    expect_at_most(err, bound, f"max |x - x̂| (≤ scale / 2) for {num_bits} bits")


def test_an_all_zero_tensor_gets_the_minimum_scale_and_zero_codes():
    q, scale = quantize_per_tensor(torch.zeros(5))
    expect_close(scale, 1e-8, "scale of all zeros (clamped)")
    expect_tensor_equal(q, torch.zeros(5, dtype=torch.int8), "q")


def test_an_empty_tensor_gets_scale_one():
    q, scale = quantize_per_tensor(torch.empty(0, 3))
    expect_tensor(q, "q", shape=(0, 3), dtype=torch.int8)
    expect_close(scale, 1.0, "scale of an empty tensor")


@pytest.mark.bad_input
@pytest.mark.parametrize("num_bits", [1, 9, 0, 4.0])
def test_num_bits_outside_2_to_8_is_a_value_error(num_bits):
    with raises(ValueError, match=r"\bnum_bits\b",
                valid=lambda: [quantize_per_tensor(torch.randn(3), num_bits=b) for b in (2, 8)]):
        quantize_per_tensor(torch.randn(3), num_bits=num_bits)


@pytest.mark.bad_input
def test_an_integer_tensor_is_a_type_error():
    with raises(TypeError, match=r"\bx\b", valid=lambda: quantize_per_tensor(torch.arange(5.0))):
        quantize_per_tensor(torch.arange(5))


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinity_is_a_value_error(bad):
    with raises(ValueError, match=r"\bNaN\b", valid=lambda: quantize_per_tensor(torch.tensor([1.0, 2.0]))):
        quantize_per_tensor(torch.tensor([1.0, bad]))
