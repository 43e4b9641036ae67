"""GPU timing helpers: device time with CUDA events and a flushed L2, and the memory bandwidth limit.

GPU 计时：用 CUDA event 计设备时间，每次计时前冲刷 L2（否则小的 INT4 权重留在缓存里，数字虚高）。
"""

from __future__ import annotations

import statistics

import torch

# Datasheet HBM bandwidth in bytes/s (NVIDIA): H100 SXM 3.35 TB/s, H100 PCIe 2.0 TB/s, H200 4.8 TB/s.
DATASHEET_BANDWIDTH = {"H100 80GB HBM3": 3.35e12, "H100 PCIe": 2.0e12, "H200": 4.8e12}
L2_FLUSH_BYTES = 256 * 2**20  # larger than any current L2 (H100: 50 MB, H200: 60 MB)


def datasheet_bandwidth(name: str) -> float | None:
    return next((bw for key, bw in DATASHEET_BANDWIDTH.items() if key in name), None)


def device_time_us(fn, reps: int = 100, warmup: int = 10) -> float:
    """Median device time of fn() in µs, L2 flushed before every timed call."""
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return statistics.median(times)


def copy_bandwidth(num_bytes: int = 2**30) -> float:
    """Measured device-to-device copy bandwidth in bytes/s (bytes read + written): the practical limit."""
    src = torch.empty(num_bytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * num_bytes / (device_time_us(lambda: dst.copy_(src), reps=20) * 1e-6)
