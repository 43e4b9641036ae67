"""GPU speed: FP16 against weight-only INT8 / INT4 formats, side by side in one run (M tokens × 8192 × 8192).

GPU 速度：同一次运行里并排测 FP16 与只量化权重的 INT8 / INT4，按权重读取带宽对比显卡上限。
Weight-only formats win only while the matmul is memory-bound (small M): the weights are read once and
dominate the bytes moved. Ideal INT4 g128 speed-up: 16 / (4 + 16/128) ≈ 3.9×.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kata.bench import copy_bandwidth, datasheet_bandwidth, device_time_us
from kata.oracles import quantize_groups
from kata.report import markdown_table

pytestmark = pytest.mark.gpu

K = N = 8192
GROUP = 128


def formats(m: int) -> dict:
    """name → (callable, bytes of weight data it must read)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(m, K, device="cuda", dtype=torch.bfloat16, generator=g)
    w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16, generator=g) * 0.02
    w16 = w.half()
    x16 = x.half()
    # W8A16: int8 codes, one scale per output channel (the kata's RTN, symmetric).
    q8, scale8, _ = quantize_groups(w, 8, None, symmetric=True)
    q8, scale8 = q8.to(torch.int8), scale8[:, 0]
    # W4A16 tinygemm: unsigned codes, bf16 scale and zero per group of 128, torch's packed layout.
    q4, scale4, zero4 = quantize_groups(w, 4, GROUP)
    zeros = (8 - zero4) * scale4  # tinygemm: ŵ = (q − 8)·scale + zero, so zero = (8 − zero_point)·scale (5.2)
    scales_and_zeros = torch.stack((scale4, zeros), -1).transpose(0, 1).contiguous().to(torch.bfloat16)
    packed = torch._convert_weight_to_int4pack(_pack_for_tinygemm(q4.to(torch.int32)), 8)
    return {
        "fp16 F.linear": (lambda: F.linear(x16, w16), N * K * 2),
        "int8 dequantize + matmul": (lambda: F.linear(x16, (q8.half() * scale8[:, None].half())), N * K + N * 4),
        "int8 torch._weight_int8pack_mm": (lambda: torch._weight_int8pack_mm(x, q8, scale8.to(torch.bfloat16)),
                                           N * K + N * 2),
        "int4 g128 torch._weight_int4pack_mm": (lambda: torch._weight_int4pack_mm(x, packed, GROUP, scales_and_zeros),
                                                N * K // 2 + N * (K // GROUP) * 4),
    }


def _pack_for_tinygemm(q4: torch.Tensor) -> torch.Tensor:
    """The CUDA packer (torch ≥ 2.5) takes uint8, two codes per byte, the even column in the high nibble."""
    return ((q4[:, ::2] << 4) | q4[:, 1::2]).to(torch.uint8)


def test_every_format_computes_the_same_product():
    outputs = {name: fn().float() for name, (fn, _) in formats(4).items()}
    reference = outputs.pop("fp16 F.linear")
    for name, out in outputs.items():
        err = ((out - reference).norm() / reference.norm()).item()
        assert err < 0.15, f"{name}: relative error {err:.3f} against fp16 (4-bit rounding is ≈ 8 %)"


@pytest.mark.parametrize("m", [1, 16])
def test_weight_only_formats_side_by_side(benchmark, m):
    results = {}

    def measure():
        for name, (fn, weight_bytes) in formats(m).items():
            results[name] = (device_time_us(fn), weight_bytes)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    peak = datasheet_bandwidth(torch.cuda.get_device_name())
    practical = copy_bandwidth()
    fp16_us = results["fp16 F.linear"][0]
    rows = []
    for name, (us, weight_bytes) in results.items():
        bandwidth = weight_bytes / (us * 1e-6)
        rows.append((name, round(us, 1), f"{fp16_us / us:.2f}×", f"{bandwidth / 1e12:.2f}",
                     f"{bandwidth / peak:.0%}" if peak else "—", f"{bandwidth / practical:.0%}"))
    benchmark.extra_info.update({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "M": m,
                                 "results_us": {k: v[0] for k, v in results.items()},
                                 "copy_bandwidth_TBps": practical / 1e12})
    table = markdown_table(("format", "device µs", "speed-up vs fp16", "weight TB/s", "of datasheet",
                            "of measured copy"), rows)
    out = Path(os.environ.get("KATA_BENCH_DIR", "bench-results"))
    out.mkdir(exist_ok=True)
    header = (f"{torch.cuda.get_device_name()}, torch {torch.__version__}, M={m}, K=N={K}, L2 flushed; "
              f"measured copy bandwidth {practical / 1e12:.2f} TB/s, datasheet "
              f"{peak / 1e12 if peak else float('nan'):.2f} TB/s\n\n")
    (out / f"weight_only_matmul_m{m}.md").write_text(header + table + "\n", encoding="utf-8")
    (out / f"weight_only_matmul_m{m}.json").write_text(json.dumps(benchmark.extra_info, indent=2))
    print("\n" + header + table)
    if m == 1:  # memory-bound: reading a quarter of the bytes must show, measured in this same run
        assert fp16_us / results["int4 g128 torch._weight_int4pack_mm"][0] > 1.3
