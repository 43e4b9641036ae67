"""Practice (a) — two INT4 values per byte, real bytes, torch's CPU INT4 layout (solution). INT4 打包（参考答案）。"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kata.validate import check_float_tensor


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """byte = (q[2i] & 0xF) | (q[2i+1] & 0xF) << 4 along the last dim: low nibble first."""
    if q.dtype not in (torch.int8, torch.uint8):
        raise TypeError(f"q 必须是 int8 或 uint8 / q must be int8 (signed) or uint8 (unsigned), got {q.dtype}")
    lo, hi = (-8, 7) if q.dtype == torch.int8 else (0, 15)
    if q.numel() and (q.min() < lo or q.max() > hi):
        raise ValueError(f"q 超出 INT4 范围 / q out of the INT4 range [{lo}, {hi}]: "
                         f"min {q.min().item()}, max {q.max().item()}")
    if q.dim() == 0 or q.shape[-1] % 2:
        raise ValueError(f"q 的最后一维必须是偶数 / q's last dim must be even, got shape {tuple(q.shape)}")
    nibbles = q.to(torch.uint8) & 0xF  # two's complement: -1 → 0b1111
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor, *, signed: bool) -> torch.Tensor:
    """Inverse of pack_int4; signed nibbles ≥ 8 are negative (n - 16)."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed 必须是 uint8 / packed must be uint8, got {packed.dtype}")
    nibbles = torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(-2)  # (..., n/2, 2) → (..., n)
    if not signed:
        return nibbles
    return torch.where(nibbles >= 8, nibbles.to(torch.int16) - 16, nibbles.to(torch.int16)).to(torch.int8)


def measure_weight_bytes(w: torch.Tensor, quantize: Callable, group_size: int = 64) -> dict[str, int]:
    """Real nbytes of w as fp16; as int8 per channel + fp16 scales; as packed int4 per group + fp16 scales
    + uint8 zero points. quantize(w, num_bits, group_size) → (codes, scale, zero_point)."""
    check_float_tensor(w, "w", allow_empty=False)
    q8, scale8, _ = quantize(w, 8, None)
    q4, scale4, zero4 = quantize(w, 4, group_size)
    return {
        "fp16": w.to(torch.float16).nbytes,
        "int8": q8.to(torch.int8).nbytes + scale8.to(torch.float16).nbytes,
        "int4": pack_int4(q4.to(torch.uint8)).nbytes + scale4.to(torch.float16).nbytes
        + zero4.to(torch.uint8).nbytes,
    }


def to_torch_int4_cpu(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                      group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's CPU INT4 format: codes packed by torch._convert_weight_to_int4pack_for_cpu, and
    scales_and_zeros (in/group, out, 2) for ŵ = (q - 8)·scale + zero, so zero = (8 - zero_point)·scale."""
    packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
    zero = (8 - zero_point.float()) * scale
    return packed, torch.stack((scale, zero), dim=-1).transpose(0, 1).contiguous()


def int4_matmul_cpu(x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor,
                    group_size: int) -> torch.Tensor:
    """y = x · ŵᵀ with torch's fused CPU INT4 kernel."""
    return torch._weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_zeros.to(x.dtype))
