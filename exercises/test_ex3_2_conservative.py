"""Tests for 3.2 — when to be conservative. 测试：何时更保守。"""

import pytest
import torch

from exercises.ex3_2_conservative import plan_precision, recommend_scheme
from kata.harness.check import expect_equal, raises
from kata.oracles import measure_sqnr


@pytest.mark.parametrize(("sqnr", "memory_bound", "expected"), [
    ({4: 23.0, 8: 47.0}, False, "int4"),
    ({4: 16.0, 8: 41.0}, False, "int8"),
    ({4: 16.0, 8: 41.0}, True, "qat-int4"),
    ({4: 5.0, 8: 12.0}, False, "fp16"),
    ({4: 5.0, 5: 18.0, 6: 24.0, 8: 36.0}, False, "int6"),
    ({4: 23.0, 8: 47.0}, True, "int4"),  # rule 1 before rule 2: PTQ that meets the bar needs no QAT
    ({4: 5.0, 8: 12.0}, True, "qat-int4"),  # rule 2 before rule 4: memory-bound means QAT, not FP16
])
def test_the_rules_pick_the_scheme(sqnr, memory_bound, expected):
    got = recommend_scheme(sqnr, target_bits=4, memory_bound=memory_bound)
    expect_equal(got, expected, f"recommend_scheme({sqnr}, memory_bound={memory_bound})")


def test_exactly_on_the_bar_counts_as_good_enough():
    expect_equal(recommend_scheme({4: 20.0, 8: 44.0}), "int4", "SQNR exactly 20 dB at 4 bits")


def test_the_bar_can_be_raised():
    expect_equal(recommend_scheme({4: 23.0, 8: 47.0}, min_sqnr_db=30.0), "int8", "min_sqnr_db=30")


def test_plan_precision_measures_each_weight():
    g = torch.Generator().manual_seed(0)
    uniform = torch.rand(256, 256, generator=g) * 2 - 1  # fills the grid: ≈ 23 dB at 4 bits
    gaussian = torch.randn(256, 256, generator=g)  # tails stretch the scale: ≈ 15 dB at 4, ≈ 21 dB at 5 bits
    spiky = gaussian.clone()
    spiky[0, 0] = 300.0  # one outlier stretches the 8-bit step to 2.4: the rest rounds badly, ≈ 10 dB
    plan = plan_precision({"uniform": uniform, "gaussian": gaussian, "spiky": spiky}, measure_sqnr)
    expect_equal(plan, {"uniform": "int4", "gaussian": "int5", "spiky": "fp16"}, "plan_precision(...)")


def test_plan_precision_measures_only_from_target_bits_up():
    seen = []
    plan_precision({"w": torch.ones(4)}, lambda w, bits: seen.append(bits) or 99.0, target_bits=6)
    assert min(seen) == 6 and max(seen) <= 8, f"bits measured for target_bits=6: {sorted(seen)} (6..8 only)"


@pytest.mark.bad_input
def test_a_missing_target_width_is_a_value_error():
    with raises(ValueError, match=r"\btarget_bits\b",
                valid=lambda: recommend_scheme({4: 16.0, 8: 41.0}, target_bits=4)):
        recommend_scheme({8: 40.0}, target_bits=4)


@pytest.mark.bad_input
def test_target_bits_outside_2_to_8_is_a_value_error():
    with raises(ValueError, match=r"\btarget_bits\b",
                valid=lambda: plan_precision({"w": torch.ones(4)}, measure_sqnr, target_bits=2)):
        plan_precision({"w": torch.ones(4)}, measure_sqnr, target_bits=1)
    with raises(ValueError, match=r"\btarget_bits\b",
                valid=lambda: recommend_scheme({2: 30.0, 8: 50.0}, target_bits=2)):
        recommend_scheme({1: 30.0, 8: 50.0}, target_bits=1)


def test_a_wider_format_exactly_on_the_bar_is_good_enough():
    expect_equal(recommend_scheme({4: 10.0, 8: 20.0}), "int8", "SQNR exactly 20 dB at 8 bits")


def test_plan_precision_passes_the_bar_on():
    plan = plan_precision({"w": torch.ones(4)}, lambda w, bits: 15.0, min_sqnr_db=10.0)
    expect_equal(plan, {"w": "int4"}, "plan_precision(min_sqnr_db=10) at 15 dB")


@pytest.mark.bad_input
def test_plan_precision_with_target_bits_outside_2_to_8_is_a_value_error():
    with raises(ValueError, match=r"\btarget_bits\b",
                valid=lambda: plan_precision({"w": torch.ones(4)}, lambda w, bits: 99.0, target_bits=8)):
        plan_precision({"w": torch.ones(4)}, lambda w, bits: 99.0, target_bits=9)
