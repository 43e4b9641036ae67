"""Tests for 2.2 — quantization error, 8 vs 4 bit. 测试：量化误差。"""

import math

import pytest
import torch

from exercises.ex2_2_quant_error import compare_bit_widths, quantization_error
from kata.harness.check import expect_at_least, expect_at_most, expect_close, expect_equal, raises
from kata.oracles import dequantize_symmetric as dequantize
from kata.oracles import quantize_symmetric as quantize  # 2.2 stands without your 2.1


def gaussian(n: int = 4096, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def test_quantization_practice():
    """The chapter's own check: 8-bit error is far smaller than 4-bit error. 章节自带的测试。"""
    x = gaussian()
    result = compare_bit_widths(x, quantize, dequantize, bit_widths=(8, 4))
    for key in ("mse", "max_abs"):  # strictly smaller at 8 bits
        expect_at_most(result[8][key], math.nextafter(result[4][key], -math.inf), f"8-bit {key} (< the 4-bit one)")
    expect_at_least(result[8]["sqnr_db"], math.nextafter(result[4]["sqnr_db"], math.inf),
                    "8-bit sqnr_db (> the 4-bit one)")


def test_the_worked_example_gives_mse_max_and_sqnr():
    got = quantization_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.5]))
    expect_close(got["mse"], 0.125, "mse")
    expect_close(got["max_abs"], 0.5, "max_abs")
    expect_close(got["sqnr_db"], 10 * math.log10(5 / 0.25), "sqnr_db", rel=1e-9)


def test_a_perfect_round_trip_has_infinite_sqnr_and_zero_error():
    x = gaussian(16)
    got = quantization_error(x, x.clone())
    expect_equal((got["mse"], got["max_abs"], got["sqnr_db"]), (0.0, 0.0, math.inf), "(mse, max_abs, sqnr_db)")


def test_error_is_measured_on_every_element_of_a_matrix():
    x = torch.ones(2, 3)
    x_hat = x.clone()
    x_hat[1, 2] = 4.0
    got = quantization_error(x, x_hat)
    expect_close(got["mse"], 9 / 6, "mse over all 6 elements")
    expect_close(got["max_abs"], 3.0, "max_abs")


def test_a_finer_grid_gains_20_log10_of_the_step_ratio():
    # On uniform data the noise power is step²/12, so going from qmax 7 to qmax 127 shrinks the step
    # 127/7 times and gains 20·log10(127/7) ≈ 25.2 dB (≈ 6 dB per bit). 0.3 dB covers sampling noise.
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(3)) * 2 - 1
    result = compare_bit_widths(x, quantize, dequantize, bit_widths=(4, 8))
    expect_close(result[8]["sqnr_db"] - result[4]["sqnr_db"], 20 * math.log10(127 / 7),
                 "SQNR gain from 4 to 8 bits (dB)", abs=0.3)


def test_every_requested_bit_width_is_reported_with_its_own_error():
    result = compare_bit_widths(gaussian(), quantize, dequantize, bit_widths=(2, 3, 8))
    expect_equal(sorted(result), [2, 3, 8], "bit widths in the result")
    x = gaussian()
    expect_close(result[3]["mse"], quantization_error(x, dequantize(*quantize(x, 3)))["mse"], "mse at 3 bits")


@pytest.mark.bad_input
def test_mismatched_shapes_are_a_value_error():
    with raises(ValueError, match=r"\bx_hat\b", valid=lambda: quantization_error(torch.ones(4), torch.ones(4))):
        quantization_error(torch.zeros(4), torch.zeros(5))


@pytest.mark.bad_input
def test_an_empty_tensor_is_a_value_error():
    with raises(ValueError, match=r"\bx\b", valid=lambda: quantization_error(torch.ones(1), torch.ones(1))):
        quantization_error(torch.zeros(0), torch.zeros(0))


@pytest.mark.bad_input
def test_nan_in_the_input_is_a_value_error():
    with raises(ValueError, match=r"\bNaN\b",
                valid=lambda: quantization_error(torch.tensor([1.0, 2.0]), torch.zeros(2))):
        quantization_error(torch.tensor([1.0, float("nan")]), torch.zeros(2))


@pytest.mark.bad_input
def test_a_bit_width_outside_2_to_8_is_a_value_error():
    with raises(ValueError, match=r"\bbit_widths\b",
                valid=lambda: compare_bit_widths(gaussian(), quantize, dequantize, bit_widths=(2, 8))):
        compare_bit_widths(gaussian(), quantize, dequantize, bit_widths=(8, 16))


def test_a_silent_signal_with_noise_has_minus_infinite_sqnr():
    expect_equal(quantization_error(torch.zeros(3), torch.ones(3))["sqnr_db"], -math.inf, "sqnr_db of x = 0")


def test_sqnr_does_not_depend_on_the_signals_scale():
    x = torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64)  # Σx² ≪ 1
    expect_close(quantization_error(x, x * 1.1)["sqnr_db"], 20.0, "sqnr_db for a 10 % error", rel=1e-9)


@pytest.mark.bad_input
def test_nan_in_the_round_trip_is_a_value_error_naming_x_hat():
    with raises(ValueError, match=r"\bx_hat\b",
                valid=lambda: quantization_error(torch.ones(3), torch.tensor([0.0, 1.0, 0.0]))):
        quantization_error(torch.zeros(3), torch.tensor([0.0, float("nan"), 0.0]))
