"""2.2 — error of a quantization round trip, 8 bit vs 4 bit (solution). 量化误差（参考答案）。"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from kata.validate import check_float_tensor, check_num_bits


def quantization_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """MSE = mean((x - x̂)²), max_abs = max|x - x̂|, SQNR = 10·log10(Σx² / Σ(x - x̂)²) dB."""
    check_float_tensor(x, "x", allow_empty=False)
    check_float_tensor(x_hat, "x_hat")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat 形状 / x_hat shape {tuple(x_hat.shape)} != x shape {tuple(x.shape)}")
    x, err = x.double(), (x.double() - x_hat.double())
    noise = err.pow(2).sum().item()
    signal = x.pow(2).sum().item()
    sqnr = math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    return {"mse": err.pow(2).mean().item(), "max_abs": err.abs().max().item(), "sqnr_db": sqnr}


def compare_bit_widths(x: torch.Tensor, quantize: Callable, dequantize: Callable,
                       bit_widths: Sequence[int] = (8, 4)) -> dict[int, dict[str, float]]:
    """For each bit width b: quantization_error(x, dequantize(*quantize(x, b)))."""
    for bits in bit_widths:
        check_num_bits(bits, name="bit_widths")
    return {bits: quantization_error(x, dequantize(*quantize(x, bits))) for bits in bit_widths}
