"""Tests for 4.1 — self-check questions answered by computation. 测试：用计算回答自测题。"""

import math

import pytest
import torch

from exercises.ex4_1_self_check import activation_vs_weight, crest_factor, memory_gap, ptq_floor
from kata.harness.check import expect_close, expect_equal, raises
from kata.oracles import measure_sqnr

BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}


def memory_gb(num_params_b: float, dtype: str) -> float:
    return num_params_b * BITS[dtype] / 8


@pytest.mark.parametrize(("fmt", "gb", "over"), [("fp16", 14.0, 1.0), ("int8", 7.0, 2.0), ("int4", 3.5, 4.0)])
def test_q1_fp16_is_twice_int8_and_four_times_int4(fmt, gb, over):
    gap = memory_gap(7, memory_gb)
    expect_close(gap[fmt]["memory_gb"], gb, f"{fmt} memory_gb")
    expect_close(gap[fmt]["fp16_over"], over, f"{fmt} fp16_over")


def test_q1_other_formats_can_be_asked_for():
    expect_close(memory_gap(7, memory_gb, formats=("fp32",))["fp32"]["fp16_over"], 0.5, "fp32 fp16_over")


@pytest.mark.bad_input
def test_q1_a_parameter_count_that_is_not_positive_is_a_value_error():
    with raises(ValueError, match=r"\bnum_params_b\b", valid=lambda: memory_gap(0.001, memory_gb)):
        memory_gap(0, memory_gb)


def test_q2_crest_factor_of_the_worked_example():
    expect_close(crest_factor(torch.tensor([1.0, -1.0, 1.0, -3.0])), 3 / math.sqrt(3.0), "crest_factor", rel=1e-6)


def test_q2_crest_factor_of_all_zeros_is_one():
    expect_close(crest_factor(torch.zeros(4)), 1.0, "crest_factor(zeros)")


@pytest.mark.bad_input
def test_q2_crest_factor_rejects_nan():
    with raises(ValueError, match=r"\bNaN\b", valid=lambda: crest_factor(torch.tensor([1.0, 2.0]))):
        crest_factor(torch.tensor([1.0, float("nan")]))


def test_q2_activations_with_outlier_channels_are_harder():
    # LLM activations carry a few channels far larger than the rest (Dettmers et al., LLM.int8());
    # weights are close to Gaussian. The outlier channels stretch the per-tensor scale.
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(256, 256, generator=g) * 0.02
    activation = torch.randn(64, 256, generator=g)
    activation[:, :4] *= 60.0
    got = activation_vs_weight(weight, activation, measure_sqnr)
    expect_equal(got["activation_harder"], True, "activation_harder")
    assert got["activation_crest"] > got["weight_crest"], f"峰均比 / crest factors: {got}"
    assert got["activation_sqnr_db"] < got["weight_sqnr_db"] - 10, f"SQNR (dB): {got}"
    expect_close(got["weight_crest"], crest_factor(weight), "weight_crest")


def test_q2_without_outliers_activations_are_not_harder():
    g = torch.Generator().manual_seed(1)
    got = activation_vs_weight(torch.randn(64, 64, generator=g) * 5, torch.rand(64, 64, generator=g),
                               measure_sqnr)
    expect_equal(got["activation_harder"], False, "activation_harder for uniform activations")


def test_q3_the_worked_example():
    got = ptq_floor({4: 14.0, 6: 26.0, 8: 38.0}, min_sqnr_db=20.0)
    expect_close(got["db_per_bit"], 6.0, "db_per_bit", rel=1e-9)
    expect_equal(got["lowest_ptq_bits"], 6, "lowest_ptq_bits")


def test_q3_measured_sqnr_grows_about_6_db_per_bit():
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(2)) * 2 - 1
    got = ptq_floor({bits: measure_sqnr(x, bits) for bits in range(4, 9)})
    # 6.02 dB per bit in the limit; at 4..8 bits the symmetric grid's qmax = 2^(b-1)-1 adds a little.
    expect_close(got["db_per_bit"], 6.02, "db_per_bit on uniform data", abs=0.35)


def test_q3_no_passing_width_gives_none():
    expect_equal(ptq_floor({2: 3.0, 3: 9.0})["lowest_ptq_bits"], None, "lowest_ptq_bits when none pass")


@pytest.mark.bad_input
def test_q3_one_bit_width_is_a_value_error():
    with raises(ValueError, match=r"\bsqnr_db\b", valid=lambda: ptq_floor({4: 20.0, 8: 40.0})):
        ptq_floor({4: 20.0})


def test_q2_crest_factor_does_not_depend_on_the_scale():
    expect_close(crest_factor(torch.tensor([0.1, -0.1, 0.1, -0.3])), 3 / math.sqrt(3.0), "crest_factor", rel=1e-6)


@pytest.mark.bad_input
def test_q2_crest_factor_names_x_when_it_rejects_it():
    with raises(ValueError, match=r"\bx\b", valid=lambda: crest_factor(torch.tensor([1.0, 2.0]))):
        crest_factor(torch.tensor([1.0, float("nan")]))
    with raises(ValueError, match=r"\bx\b", valid=lambda: crest_factor(torch.ones(1))):
        crest_factor(torch.zeros(0))


def test_q2_equally_hard_activations_are_not_called_harder():
    w = torch.randn(32, 32, generator=torch.Generator().manual_seed(3))
    expect_equal(activation_vs_weight(w, w.clone(), measure_sqnr)["activation_harder"], False,
                 "activation_harder when both have the same SQNR")


def test_q3_exactly_on_the_bar_is_a_ptq_width():
    expect_equal(ptq_floor({4: 20.0, 8: 44.0})["lowest_ptq_bits"], 4, "lowest_ptq_bits at exactly 20 dB")


def test_q3_the_slope_is_computed_in_double_precision():
    got = ptq_floor({4: 14.1, 6: 26.3, 8: 38.7})
    expect_close(got["db_per_bit"], (38.7 - 14.1) / 4, "db_per_bit", rel=1e-12)  # float32 would miss by ~1e-7
