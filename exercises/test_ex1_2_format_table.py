"""Tests for 1.2 — the 7B format table. 测试：7B 模型格式对比表。"""

import pytest

from exercises.ex1_2_format_table import build_format_table, render_format_table
from kata.harness.check import expect_close, expect_equal, raises

BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}


def memory_gb(num_params_b: float, dtype: str) -> float:
    """The tests' own memory function, so this exercise stands without your 1.1 answer."""
    return num_params_b * BITS[dtype] / 8


FORMATS = ["fp32", "fp16", "int8", "int4"]


def test_the_table_has_one_row_per_format_in_order():
    rows = build_format_table(7, FORMATS, memory_gb)
    expect_equal([row["format"] for row in rows], FORMATS, "formats in the rows / 表中的格式")


@pytest.mark.parametrize(("fmt", "gb", "ratio"), [("fp32", 28.0, 2.0), ("fp16", 14.0, 1.0),
                                                  ("int8", 7.0, 0.5), ("int4", 3.5, 0.25)])
def test_each_row_has_memory_and_ratio_to_fp16(fmt, gb, ratio):
    row = {row["format"]: row for row in build_format_table(7, FORMATS, memory_gb)}[fmt]
    expect_close(row["memory_gb"], gb, f"{fmt} memory_gb")
    expect_close(row["vs_fp16"], ratio, f"{fmt} vs_fp16")


def test_the_memory_function_passed_in_is_the_one_used():
    rows = build_format_table(7, ["fp16", "int4"], lambda n, fmt: {"fp16": 10.0, "int4": 4.0}[fmt])
    expect_close(rows[1]["vs_fp16"], 0.4, "vs_fp16 from the given memory_gb")


def test_the_rendered_table_is_markdown_with_two_decimals():
    text = render_format_table(build_format_table(7, ["fp16", "int4"], memory_gb))
    expect_equal(text.strip().splitlines(), [
        "| format | memory (GB) | vs fp16 |",
        "| --- | ---: | ---: |",
        "| fp16 | 14.00 | 1.00× |",
        "| int4 | 3.50 | 0.25× |",
    ], "rendered lines / 渲染出的各行")


@pytest.mark.bad_input
def test_empty_formats_is_a_value_error():
    with raises(ValueError, match=r"\bformats\b", valid=lambda: build_format_table(7, ["int4"], memory_gb)):
        build_format_table(7, [], memory_gb)


@pytest.mark.bad_input
def test_a_parameter_count_that_is_not_positive_is_a_value_error():
    with raises(ValueError, match=r"\bnum_params_b\b", valid=lambda: build_format_table(0.001, FORMATS, memory_gb)):
        build_format_table(-1, FORMATS, memory_gb)
