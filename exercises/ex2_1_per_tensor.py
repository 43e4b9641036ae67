"""2.1 · TODO 2 — 逐张量对称量化与反量化 / Symmetric per-tensor quantize and dequantize.

整个张量共用一个 scale，整数网格关于 0 对称 / one scale for the whole tensor, a grid symmetric about 0:
    qmax  = 2**(num_bits - 1) - 1                      8 比特 → 127，4 比特 → 7
    scale = max|x| / qmax        （至少 1e-8 / at least 1e-8, so all-zero input works）
    q     = clamp(round(x / scale), -qmax - 1, qmax)   存成 / stored as torch.int8
    x̂     = q.float() * scale
例 / e.g. x = [-1.2, 0.5, 2.0], num_bits=4 → scale = 2/7 ≈ 0.2857, q = [-4, 2, 7], x̂ ≈ [-1.143, 0.571, 2.0].

空张量 → 形状相同的空 int8 张量，scale = 1.0 / an empty tensor gives an empty int8 q and scale 1.0.
坏输入 / bad input: x 不是浮点张量 → TypeError; x 含 NaN/inf → ValueError（信息含 "NaN"）; num_bits 不在 2..8 →
ValueError. 错误信息写明参数名 / every message names the argument.
(kata.validate 里有现成的检查函数 / has ready-made checks.)

答案规则 / answer rules (python -m kata rules ex2_1):
    不能用 / may not use: kata.oracles
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex2_1
"""

from __future__ import annotations

import torch


def quantize_per_tensor(x: torch.Tensor, num_bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """返回 / Returns (q: torch.int8 with x's shape, scale: 0-dim float32 tensor)."""
    raise NotImplementedError("TODO 2: quantize_per_tensor — 提示 / hint: python -m kata hint ex2_1")


def dequantize_per_tensor(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """返回 / Returns q.float() * scale: float32, q's shape."""
    raise NotImplementedError("TODO 2: dequantize_per_tensor — 提示 / hint: python -m kata hint ex2_1")
