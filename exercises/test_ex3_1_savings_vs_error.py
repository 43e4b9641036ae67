"""Tests for 3.1 · TODO 3 — saving next to error. 测试：显存节省 vs 误差。"""

import pytest
import torch

from exercises.ex3_1_savings_vs_error import savings_vs_error
from kata.harness.check import expect_close, expect_equal, raises
from kata.oracles import dequantize_symmetric as dequantize
from kata.oracles import quantize_symmetric as quantize  # 3.1 stands without your 2.1


def error(x: torch.Tensor, x_hat: torch.Tensor) -> dict:
    """The tests' own error measure (3.1 stands without your 2.2)."""
    noise = (x - x_hat).pow(2).sum()
    return {"mse": (x - x_hat).pow(2).mean().item(), "sqnr_db": (10 * torch.log10(x.pow(2).sum() / noise)).item()}


def rows_for(bit_widths=(8, 4)):
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    return x, savings_vs_error(x, quantize, dequantize, error, bit_widths=bit_widths)


def test_rows_are_fp16_then_each_bit_width():
    _, rows = rows_for((8, 4, 3))
    expect_equal([(r["format"], r["bits"]) for r in rows], [("fp16", 16), ("int8", 8), ("int4", 4), ("int3", 3)],
                 "(format, bits) of the rows")


@pytest.mark.parametrize(("index", "saving"), [(0, 0.0), (1, 0.5), (2, 0.75)])
def test_memory_saving_is_one_minus_bits_over_16(index, saving):
    _, rows = rows_for()
    expect_close(rows[index]["memory_saving"], saving, f"{rows[index]['format']} memory_saving")


def test_the_fp16_row_measures_the_half_precision_round_trip():
    x, rows = rows_for()
    expected = error(x, x.half().float())
    expect_close(rows[0]["mse"], expected["mse"], "fp16 mse", rel=1e-6)
    assert rows[0]["mse"] > 0, "fp16 也有舍入误差 / fp16 rounds too: its mse must be measured, not 0"


def test_integer_rows_use_the_quantizer_given():
    x, rows = rows_for()
    expect_close(rows[2]["mse"], error(x, dequantize(*quantize(x, 4)))["mse"], "int4 mse", rel=1e-6)
    expect_close(rows[1]["sqnr_db"], error(x, dequantize(*quantize(x, 8)))["sqnr_db"], "int8 sqnr_db", rel=1e-6)


def test_more_saving_costs_more_error():
    _, rows = rows_for()
    sqnrs = [r["sqnr_db"] for r in rows]
    expect_equal(sqnrs == sorted(sqnrs, reverse=True), True, f"SQNR falls as bits fall {sqnrs}")


@pytest.mark.bad_input
def test_an_empty_tensor_is_a_value_error():
    with raises(ValueError, match=r"\bx\b", valid=lambda: savings_vs_error(torch.ones(3), quantize, dequantize, error)):
        savings_vs_error(torch.zeros(0), quantize, dequantize, error)


@pytest.mark.bad_input
def test_a_bit_width_outside_2_to_8_is_a_value_error():
    with raises(ValueError, match=r"\bbit_widths\b",
                valid=lambda: savings_vs_error(torch.ones(3), quantize, dequantize, error, bit_widths=(2, 8))):
        savings_vs_error(torch.ones(3), quantize, dequantize, error, bit_widths=(1,))
