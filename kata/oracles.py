"""Slow, obviously correct oracles the exercise tests pass in or compare against (Tensor-Puzzles style).

测试用的“慢而显然正确”的参照实现：逐元素、逐组地写，清楚胜过快。Later exercises receive these as their
building blocks, so each exercise is graded on its own code alone.
"""

from __future__ import annotations

import math

import torch


def quantize_symmetric(x: torch.Tensor, num_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor symmetric: scale = max|x| / (2^(b-1) - 1), codes clamped to the signed grid."""
    qmax = 2 ** (num_bits - 1) - 1
    scale = torch.tensor(max(x.abs().max().item() / qmax, 1e-8))
    return torch.clamp(torch.round(x / scale), -qmax - 1, qmax), scale


def dequantize_symmetric(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q * scale


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """10·log10(Σx² / Σ(x - x̂)²)."""
    noise = (x.double() - x_hat.double()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(x.double().pow(2).sum().item() / noise)


def measure_sqnr(x: torch.Tensor, num_bits: int = 8) -> float:
    """SQNR of a per-tensor symmetric round trip."""
    return sqnr_db(x, dequantize_symmetric(*quantize_symmetric(x, num_bits)))


def quantize_groups(w: torch.Tensor, num_bits: int, group_size: int | None,
                    symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Min/max quantization of each row's groups (group_size=None: one group per row), one group at a time.

    Returns codes (int64, w's shape), scale (rows, groups) and zero_point (rows, groups). The asymmetric range
    always holds 0, as in GPTQ: lo = min(min w, 0), hi = max(max w, 0).
    """
    rows, cols = w.shape
    size = group_size or cols
    q = torch.zeros(rows, cols, dtype=torch.int64)
    scale = torch.zeros(rows, cols // size)
    zero = torch.zeros(rows, cols // size, dtype=torch.int64)
    for r in range(rows):
        for g in range(cols // size):
            block = w[r, g * size:(g + 1) * size].float()
            if symmetric:
                qmin, qmax = -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1
                s, z = max(block.abs().max().item() / qmax, 1e-8), 0
            else:
                qmin, qmax = 0, 2**num_bits - 1
                lo, hi = min(block.min().item(), 0.0), max(block.max().item(), 0.0)
                s = max((hi - lo) / qmax, 1e-8)
                z = min(max(round(-lo / s), 0), qmax)
            scale[r, g], zero[r, g] = s, z
            q[r, g * size:(g + 1) * size] = torch.clamp(torch.round(block / scale[r, g]) + z, qmin, qmax)
    return q, scale, zero


def dequantize_groups(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    size = q.shape[1] // scale.shape[1]
    return (q - zero_point.repeat_interleave(size, dim=1)) * scale.repeat_interleave(size, dim=1)


@torch.no_grad()
def round_to_nearest(model, num_bits: int, group_size: int) -> None:
    """RTN in place: every *_proj weight rounded per group with min/max (asymmetric), no calibration.
    Vectorized (the real model has 210 layers); quantize_groups above is the same rule, one group at a time."""
    qmax = 2**num_bits - 1
    for name, module in model.named_modules():
        if name.endswith("_proj"):
            w = module.weight.reshape(module.weight.shape[0], -1, group_size)
            lo, hi = w.amin(-1, keepdim=True).clamp(max=0), w.amax(-1, keepdim=True).clamp(min=0)
            scale = ((hi - lo) / qmax).clamp(min=1e-8)
            zero = torch.round(-lo / scale).clamp(0, qmax)
            q = torch.clamp(torch.round(w / scale) + zero, 0, qmax)
            module.weight.copy_(((q - zero) * scale).reshape_as(module.weight))


def distinct_per_group(w: torch.Tensor, group_size: int) -> int:
    """The largest number of distinct values in any (row, group) of w: at most 2^b on a b-bit grid."""
    groups = w.detach().reshape(w.shape[0], -1, group_size)
    return max(len(torch.unique(groups[r, g])) for r in range(groups.shape[0]) for g in range(groups.shape[1]))
