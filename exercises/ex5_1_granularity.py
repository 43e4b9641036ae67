"""实践 (a) — 量化粒度、对称与非对称、截断 / Granularity, symmetric vs asymmetric, clipping.

权重 w 形状为 (out, in)。scale 与 zero_point 的形状决定粒度 / the shape of scale and zero_point sets the
granularity:
    "tensor"  → (1, 1)                      整个张量一个 scale / one scale for the whole tensor
    "channel" → (out, 1)                    每个输出通道（行）一个 / one per output channel (row)
    "group"   → (out, in // group_size)     每行每 group_size 个连续输入一个 / one per group of inputs
group_size 不能整除 in → ValueError（写明 group_size 与行长）/ must divide the row length, else ValueError.

对称 / symmetric (zero_point = 0, codes int8 in [-2^(b-1), 2^(b-1)-1]):
    scale = c · max|w| / (2^(b-1) - 1)
非对称 / asymmetric (codes uint8 in [0, 2^b - 1]):
    lo = min(c · min w, 0),  hi = max(c · max w, 0)        范围总包含 0 / the range always holds 0
    scale = (hi - lo) / (2^b - 1),   zero_point = round(-lo / scale)   (int32)
两者 scale 至少 1e-8 / both clamp scale to at least 1e-8; c = clip_ratio ∈ (0, 1] 截断比例 / shrink factor.
    q = clamp(round(w / scale) + zero_point, qmin, qmax);   ŵ = (q - zero_point) · scale
例 / e.g. w = [[-1.0, 3.0]], 4 bits, asymmetric, per tensor → lo = -1, hi = 3, scale = 4/15,
    zero_point = round(3.75) = 4, q = [[0, 15]] (uint8), ŵ = [[-1.0667, 2.9333]].

截断 / clipping — 少数极大值会撑大 scale，截掉它们往往误差更小 / rare large values stretch the scale:
    percentile_clip_ratio: c = quantile(|w|, p/100) / max|w|，每个 (行, 组) 一个 / per (row, group)
    mse_clip_ratio: 在 linspace(1, min_ratio, grid) 里为每个 (行, 组) 选出平方误差最小的 c /
                    per (row, group), the c in linspace(1, min_ratio, grid) with the least squared error

坏输入 / bad input: w 非浮点 → TypeError; w 非二维、含 NaN/inf（信息含 "NaN"）、为空 → ValueError; num_bits 不在 2..8 →
ValueError; 未知 granularity → ValueError（列出合法值，如 "channel"）; group_size 不整除列数 → ValueError;
percentile 不在 (0, 100] → ValueError. 错误信息写明参数名 / every message names the argument.
kata.validate 有现成的检查 / has ready checks: check_float_tensor, check_num_bits, check_choice,
check_group_size(group_size, in_features)（None 表示整行 / None means the whole row）.

答案规则 / answer rules (python -m kata rules ex5_1):
    不能用 / may not use: kata.oracles
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex5_1
"""

from __future__ import annotations

import torch

GRANULARITIES = ("tensor", "channel", "group")


def choose_qparams(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                   group_size: int | None = None,
                   clip_ratio: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """返回 / Returns (scale float32, zero_point int32), both shaped (rows, groups) as above."""
    raise NotImplementedError("5.1: choose_qparams — 提示 / hint: python -m kata hint ex5_1")


def quantize(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, num_bits: int = 4, *,
             symmetric: bool = True) -> torch.Tensor:
    """返回与 w 同形的整数码 / Returns codes shaped like w: int8 if symmetric, uint8 if not."""
    raise NotImplementedError("5.1: quantize — 提示 / hint: python -m kata hint ex5_1")


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """ŵ = (q - zero_point) · scale，float32，与 q 同形 / float32, q's shape."""
    raise NotImplementedError("5.1: dequantize — 提示 / hint: python -m kata hint ex5_1")


def fake_quantize(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                  group_size: int | None = None, clip_ratio: float | torch.Tensor = 1.0) -> torch.Tensor:
    """choose_qparams → quantize → dequantize：模型实际用到的权重 / the weight the model really uses."""
    raise NotImplementedError("5.1: fake_quantize — 提示 / hint: python -m kata hint ex5_1")


def percentile_clip_ratio(w: torch.Tensor, percentile: float = 99.9, *, granularity: str = "channel",
                          group_size: int | None = None) -> torch.Tensor:
    """每个 (行, 组) 的 c，形状同 scale / c per (row, group), shaped like scale."""
    raise NotImplementedError("5.1: percentile_clip_ratio — 提示 / hint: python -m kata hint ex5_1")


def mse_clip_ratio(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                   group_size: int | None = None, grid: int = 20, min_ratio: float = 0.5) -> torch.Tensor:
    """每个 (行, 组) 误差最小的 c，形状同 scale / the best c per (row, group), shaped like scale."""
    raise NotImplementedError("5.1: mse_clip_ratio — 提示 / hint: python -m kata hint ex5_1")
