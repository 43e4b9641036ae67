"""What this CPU does in hardware, for choosing between precisions that compute the same thing at other speeds.

CPU 能力：bf16 与 int8 矩阵乘有没有硬件支持。没有时 torch 用模拟实现，慢几十倍（AMD EPYC 只有 AVX2，实测：
bf16 矩阵乘比 float32 慢 57×，torch._int_mm 比 float32 慢 78×）。Without hardware support torch emulates them:
measured on an AVX2-only AMD EPYC, a bf16 matmul ran 57× and torch._int_mm 78× slower than float32.
"""

from __future__ import annotations

import functools

import torch


def _supported(*features: str) -> bool:
    return any(getattr(torch.cpu, name, lambda: False)() for name in features)


@functools.cache
def has_fast_bf16() -> bool:
    """bfloat16 matmuls in hardware: AVX-512 BF16 or AMX tiles."""
    return _supported("_is_avx512_bf16_supported", "_is_amx_tile_supported")


@functools.cache
def has_fast_int8() -> bool:
    """int8 matmuls in hardware (what torch._int_mm needs to be fast): VNNI or AMX tiles."""
    return _supported("_is_vnni_supported", "_is_amx_tile_supported")
