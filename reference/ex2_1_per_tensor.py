"""2.1 · TODO 2 — symmetric per-tensor quantize / dequantize (solution). 逐张量对称量化（参考答案）。"""

from __future__ import annotations

import torch

from kata.validate import check_float_tensor, check_num_bits


def quantize_per_tensor(x: torch.Tensor, num_bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """q = clamp(round(x / scale), -qmax-1, qmax) with scale = max|x| / qmax, qmax = 2^(b-1) - 1."""
    check_float_tensor(x, "x")
    check_num_bits(num_bits)
    if x.numel() == 0:
        return torch.empty(x.shape, dtype=torch.int8), torch.tensor(1.0)
    qmax = 2 ** (num_bits - 1) - 1
    # The largest magnitude maps to ±qmax; the clamp keeps an all-zero tensor from dividing by zero.
    scale = (x.abs().max().float() / qmax).clamp(min=1e-8)
    q = torch.clamp(torch.round(x.float() / scale), -qmax - 1, qmax).to(torch.int8)
    return q, scale


def dequantize_per_tensor(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x̂ = q · scale, in float32, same shape as q."""
    return q.float() * scale
