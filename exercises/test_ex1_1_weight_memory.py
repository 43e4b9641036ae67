"""Tests for 1.1 · TODO 1 — weight memory. 测试：权重显存计算。"""

import re

import pytest

from exercises.ex1_1_weight_memory import bits_per_weight, calculate_weight_memory
from kata.harness.check import expect_close, expect_equal, raises


def test_calculate_weight_memory():
    """The chapter's own check: 7B → 14.0 / 7.0 / 3.5 GB. 章节自带的测试。"""
    for dtype, gb in (("fp16", 14.0), ("int8", 7.0), ("int4", 3.5)):
        expect_equal(calculate_weight_memory(7, dtype), gb, f"calculate_weight_memory(7, {dtype!r}) in GB")


def test_more_formats_follow_the_same_formula():
    # One table, not one test per format: fp8's 8 bits make 7B weigh exactly 7 GB, the parameter count itself.
    for dtype, gb in (("fp32", 28.0), ("bf16", 14.0), ("fp8", 7.0)):
        expect_close(calculate_weight_memory(7, dtype), gb, f"calculate_weight_memory(7, {dtype!r})")


def test_memory_scales_linearly_with_parameter_count():
    expect_close(calculate_weight_memory(0.135, "fp16"), 0.27, "calculate_weight_memory(0.135, 'fp16')")


@pytest.mark.parametrize(("dtype", "bits"), [("fp16", 16.0), ("int8", 8.0), ("int4", 4.0)])
def test_bits_without_groups_are_the_storage_bits(dtype, bits):
    expect_close(bits_per_weight(dtype), bits, f"bits_per_weight({dtype!r})")


def test_int4_with_one_fp16_scale_per_128_weights_costs_4_125_bits():
    expect_close(bits_per_weight("int4", group_size=128), 4.125, "bits_per_weight('int4', group_size=128)")


def test_a_zero_point_per_group_adds_its_bits_too():
    got = bits_per_weight("int4", group_size=64, scale_bits=16, zero_point_bits=16)
    expect_close(got, 4.5, "bits_per_weight('int4', group_size=64, zero_point_bits=16)")


def test_group_metadata_shows_in_the_memory():
    expect_close(calculate_weight_memory(7, "int4", group_size=128), 7 * 4.125 / 8,
                 "calculate_weight_memory(7, 'int4', group_size=128)")


@pytest.mark.bad_input
def test_an_unknown_dtype_is_a_value_error_listing_valid_names():
    with raises(ValueError, match=r"\bint4\b", valid=lambda: calculate_weight_memory(7, "int4")) as err:
        calculate_weight_memory(7, "int5")
    assert re.search(r"\bdtype\b", str(err.value)), f"错误信息要写明参数名 dtype / the message should name the " \
                                                     f"argument dtype: {err.value}"


@pytest.mark.bad_input
@pytest.mark.parametrize("group_size", [0, -64, 2.5])
def test_a_group_size_that_is_not_a_positive_int_is_a_value_error(group_size):
    with raises(ValueError, match=r"\bgroup_size\b", valid=lambda: bits_per_weight("int4", group_size=1)):
        bits_per_weight("int4", group_size=group_size)


@pytest.mark.bad_input
@pytest.mark.parametrize("num_params_b", [0, -7])
def test_a_parameter_count_that_is_not_positive_is_a_value_error(num_params_b):
    with raises(ValueError, match=r"\bnum_params_b\b", valid=lambda: calculate_weight_memory(0.001, "fp16")):
        calculate_weight_memory(num_params_b, "fp16")


def test_a_group_of_one_weight_is_allowed_and_carries_a_whole_scale():
    expect_close(bits_per_weight("int4", 1), 20.0, "bits_per_weight('int4', group_size=1)")
