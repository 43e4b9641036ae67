"""GPU helpers: the choices a GPU path makes from the device, device time without the host, the host-inclusive
time of one eager call, the copy limit.

gpu_paths(): dtype 与内核按设备选择——不原生支持 bf16 的卡（T4 等，计算能力 < 8.0）用 fp16，tinygemm 只在它存在
（计算能力 ≥ 8.0）时使用；KATA_GPU=sm75 让任何 GPU 都按 T4 的选择走 / every GPU path takes its dtype and kernels
from gpu_paths(); KATA_GPU=sm75 makes a T4's (compute capability 7.5) choices on any GPU, to test them.

GPU 计时：两种时间分开报。
- graph_time_us: 设备时间——把 n × (冲刷 L2, 调用) 录成一个 CUDA graph 回放，减去 n 次冲刷的 graph。
  Device time: a CUDA graph of n × (flush L2, call) replayed, minus a graph of n flushes, divided by n. A graph
  replays its kernels back to back with no Python in between, so no host time can hide in the number.
- eager_time_us: 一次普通 Python 调用的时间（含主机发射开销）——没有 graph 的解码循环付的就是这个。
  Host-inclusive: CUDA events around one eager call on an idle GPU; the start event fires at once, so the number
  includes the host's launch work (Python, the Triton launcher, allocations) whenever that outlasts the kernels.
Every timed call sees a cold L2 (a 256 MiB write evicts it): small INT4 weights would otherwise stay cached.
"""

from __future__ import annotations

import functools
import os
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

L2_FLUSH_BYTES = 256 * 2**20  # larger than any current L2 (H100: 50 MB, H200: 60 MB)
NATIVE_BF16 = (8, 0)  # Ampere on: bf16 arithmetic and tensor cores, and torch's tinygemm INT4 kernel


@dataclass(frozen=True)
class GpuPaths:
    """What a GPU path uses on this device, and why."""

    capability: tuple[int, int]
    dtype: torch.dtype  # activations and unquantized weights: bf16 where native, else fp16
    tinygemm: bool  # torch._weight_int4pack_mm (CUDA, compute capability ≥ 8.0)
    why: str


def gpu_paths(device: int | None = None) -> GpuPaths:
    """The device's choices, or those of compute capability X.Y under KATA_GPU=smXY (e.g. sm75, a T4)."""
    forced = os.environ.get("KATA_GPU", "")
    match = re.fullmatch(r"sm(\d)(\d)", forced)
    if forced and not match:
        raise ValueError(f"KATA_GPU 应为 smXY（如 sm75）/ KATA_GPU must read smXY (e.g. sm75), got {forced!r}")
    capability = (int(match[1]), int(match[2])) if match else torch.cuda.get_device_capability(device)
    native = capability >= NATIVE_BF16
    tinygemm = native and hasattr(torch, "_weight_int4pack_mm")
    source = f"KATA_GPU={forced}" if match else torch.cuda.get_device_name(device)
    why = (f"{source}: compute capability {capability[0]}.{capability[1]}, "
           + ("bf16 native, tinygemm available" if native else "no native bf16 (fp16 instead), no tinygemm"))
    return GpuPaths(capability, torch.bfloat16 if native else torch.float16, tinygemm, why)


def _flush_buffer() -> torch.Tensor:
    """The L2 flush buffer of the current device, allocated once and kept: a call timed later allocates nothing."""
    return _flush_buffer_of(torch.cuda.current_device())


@functools.cache
def _flush_buffer_of(device: int) -> torch.Tensor:
    return torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)


def _replay_ms(graph: torch.cuda.CUDAGraph) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def graph_time_us(fn: Callable[[], object], calls: int = 20, reps: int = 7) -> float:
    """Median device time of fn() in µs, L2 flushed before each call, host launch time excluded: one CUDA graph
    of `calls` × (flush, fn) and one of `calls` flushes, each replayed `reps` times; (calls − flushes) / calls.
    fn is called a few times first, outside any graph, so that compilation and autotuning happen before capture."""
    flush = _flush_buffer()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up on a side stream, as torch.cuda.graphs asks
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    with_calls, flushes_only = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    with torch.cuda.graph(with_calls):
        for _ in range(calls):
            flush.zero_()
            fn()
    with torch.cuda.graph(flushes_only):
        for _ in range(calls):
            flush.zero_()
    for graph in (with_calls, flushes_only):  # first replays upload the graphs
        _replay_ms(graph)
    times = [(_replay_ms(with_calls) - _replay_ms(flushes_only)) * 1000 / calls for _ in range(reps)]
    return statistics.median(times)


def eager_time_us(fn: Callable[[], object], reps: int = 50, warmup: int = 5) -> float:
    """Median time of one eager Python call fn() in µs, host launch work included: CUDA events recorded around the
    call on an idle GPU (synchronized after an L2 flush)."""
    flush = _flush_buffer()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        flush.zero_()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return statistics.median(times)


def copy_bandwidth(num_bytes: int = 2**30) -> float:
    """Measured device-to-device copy bandwidth in bytes/s (bytes read + written): the practical limit. A copy
    kernel (an element-wise negation), not `copy_`: inside a CUDA graph a plain copy becomes a memcpy node that
    the copy engines run, slower than the SMs (measured 2.77 TB/s on an H200, where fp16 GEMV reads at 3.2)."""
    src = torch.ones(num_bytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    return 2 * num_bytes / (graph_time_us(lambda: torch.neg(src, out=dst), calls=5, reps=5) * 1e-6)
