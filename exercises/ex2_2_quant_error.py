"""2.2 — 量化误差：8 比特 vs 4 比特 / Quantization error: 8 bit vs 4 bit.

量化一次再反量化（往返），和原值比较 / quantize, dequantize, compare with the original:
    MSE      = mean((x - x̂)²)
    max_abs  = max|x - x̂|
    SQNR(dB) = 10 · log10( Σx² / Σ(x - x̂)² )      信号与量化噪声之比，越大越好 / higher is better
             (误差为 0 → +inf / zero error → +inf)
例 / e.g. x = [1, 2], x̂ = [1, 1.5] → MSE = 0.125, max_abs = 0.5, SQNR = 10·log10(5 / 0.25) ≈ 13.01 dB.

量化函数作为参数传入（形如 2.1 的 quantize_per_tensor / dequantize_per_tensor），所以本练习不依赖 2.1。
The quantizer is passed in (shaped like 2.1's functions), so this exercise stands without your 2.1.

坏输入 / bad input: x 为空、不是浮点、含 NaN/inf（信息含 "NaN"）→ ValueError/TypeError; x_hat 形状不同 → ValueError;
bit_widths 里有 2..8 以外的值 → ValueError（信息里写 bit_widths）.

答案规则 / answer rules (python -m kata rules ex2_2):
    不能用 / may not use: kata.oracles
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex2_2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def quantization_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """返回 / Returns {"mse": float, "max_abs": float, "sqnr_db": float}."""
    raise NotImplementedError("2.2: quantization_error — 提示 / hint: python -m kata hint ex2_2")


def compare_bit_widths(x: torch.Tensor, quantize: Callable, dequantize: Callable,
                       bit_widths: Sequence[int] = (8, 4)) -> dict[int, dict[str, float]]:
    """对每个位宽 b / for each bit width b: quantize(x, b) → (q, scale); x̂ = dequantize(q, scale).

    返回 / Returns {b: quantization_error(x, x̂)}.
    """
    raise NotImplementedError("2.2: compare_bit_widths — 提示 / hint: python -m kata hint ex2_2")
