"""The one place that decides each CPU's paths: the float dtype of baselines, calibration and the lab, whether
torch._int_mm is fast here, and the thread count. Decisions only: the paths themselves live where the exercises
put them (5.7's exact int8 emulation is the learner's own work).

CPU 的选择只在这里做：基线、校准和实验用哪种浮点（bf16 有硬件支持才用，否则 float32）、torch._int_mm 在这里快不快、
用几个线程。没有硬件支持时 torch 用模拟实现，慢几十倍（只有 AVX2 的 AMD EPYC 实测：bf16 矩阵乘比 float32 慢 57×，
torch._int_mm 慢 78×）。KATA_CPU=avx2 让任何 CPU 都按 AVX2 笔记本的答案选（测试和 CI 用它走一遍 AVX2 的路径）。
Without hardware support torch emulates them: on an AVX2-only AMD EPYC a bf16 matmul ran 57× and torch._int_mm 78×
slower than float32. KATA_CPU=avx2 makes any CPU choose as an AVX2 laptop does, so those paths are tested anywhere.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

ENV_VAR = "KATA_CPU"  # "avx2": decide as a CPU without bf16 or int8 matmuls in hardware would
DEFAULT_THREADS = 2  # the lab's and the benchmarks' default: two runs on one machine give the same digits


def _supported(*features: str) -> bool:
    return any(getattr(torch.cpu, name, lambda: False)() for name in features)


def _forced_avx2() -> bool:
    return os.environ.get(ENV_VAR, "").lower() == "avx2"


def has_fast_bf16() -> bool:
    """bfloat16 matmuls in hardware: AVX-512 BF16 or AMX tiles (never under KATA_CPU=avx2)."""
    return not _forced_avx2() and _hardware("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def has_fast_int8() -> bool:
    """int8 matmuls in hardware (what torch._int_mm needs to be fast): VNNI or AMX tiles (never under avx2)."""
    return not _forced_avx2() and _hardware("_is_vnni_supported", "_is_amx_tile_supported")


@functools.cache
def _hardware(*features: str) -> bool:
    return _supported(*features)


@functools.cache
def name() -> str:
    """The processor's model name, to print beside a time: /proc/cpuinfo's where there is one (Linux), else what
    the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def threads() -> int:
    """OMP_NUM_THREADS when the environment sets it, else DEFAULT_THREADS."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_THREADS


@dataclass(frozen=True)
class Paths:
    """What this CPU runs: the float dtype for baselines, calibration and the lab's deployed formats, whether
    torch._int_mm is fast, the thread count, and why."""

    float_dtype: torch.dtype
    fast_int8: bool
    threads: int
    why: str


def paths() -> Paths:
    """This CPU's decisions (KATA_CPU=avx2 forces an AVX2 laptop's), with a one-line reason to print."""
    bf16, int8 = has_fast_bf16(), has_fast_int8()
    source = "KATA_CPU=avx2" if _forced_avx2() else f"torch sees {torch.backends.cpu.get_cpu_capability()}"
    why = (f"{source}: {'bf16 in hardware' if bf16 else 'no bf16 in hardware, float32 instead'}; torch._int_mm "
           f"{'in hardware' if int8 else 'emulated (slow): int8 products emulated exactly in float32'}")
    return Paths(torch.bfloat16 if bf16 else torch.float32, int8, threads(), why)
