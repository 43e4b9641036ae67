"""GPU speed of the target's own code (5.10's kernel, 5.3's dequantize path) beside FP16, tinygemm and GemLite.

GPU 速度：同一次运行里并排测 FP16、5.3 的反量化再乘、tinygemm、GemLite 和目标自己的 5.10 内核；再在随机权重的
真实形状模型上测逐 token 解码速度。`nox -s bench -- --target exercises` 测你自己的代码。
Two times per format (kata/timing.py): device time — a CUDA graph of n × (L2 flush, call) minus a graph of n
flushes, so no host work can hide in it — and, in its own column, the host-inclusive time of one eager call.
Speed-ups against FP16 from the same run, on device time; bandwidth = weight bytes read / device time, against the
measured copy bandwidth. dtype and kernels come from the device (kata.timing.gpu_paths; KATA_GPU=sm75 makes a T4's
choices). Results: bench-results/*.json ($KATA_BENCH_DIR; docs/results for the committed run, from which README's
tables are generated: python -m kata.lab.gpu_report --readme README.md). KATA_BENCH_QUICK=1: M = 1 and no
torch.compile (the notebook's quick pass).

Floors: every measured shape asserts its ratios. On any card the 5.10 W4 kernel beats dequantize-then-matmul, and
at M = 1 on the Llama-3-8B shapes it beats fp16 by GENERIC_M1_FLOOR. On the card of the committed run
(docs/results/) each ratio must also reach (1 − NOISE) of the committed one: the stated noise margin.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kata.lab.gpu_report import kernel_table
from kata.oracles import quantize_groups
from kata.timing import eager_time_us, gpu_paths, graph_time_us
from tests.benchmarks.common import NOISE, QUICK, committed_floors, machine, write
from tests.benchmarks.peers import GROUP, gemlite_linear, gemlite_tuned, tinygemm_operands, versions

pytestmark = pytest.mark.gpu
triton = pytest.importorskip("triton", reason="5.10 的内核需要 Triton / 5.10's kernel needs Triton")

SHAPES = {  # name → (K = in_features, N = out_features)
    "8192→8192": (8192, 8192),
    "Llama-3-8B q/o 4096→4096": (4096, 4096),
    "Llama-3-8B gate/up 4096→14336": (4096, 14336),
    "Llama-3-8B down 14336→4096": (14336, 4096),
    "Llama-3-8B q+k+v packed 4096→6144": (4096, 6144),
    "Llama-3-8B gate+up packed 4096→28672": (4096, 28672),
    "SmolLM2 q/o 576→576": (576, 576),
    "SmolLM2 gate/up 576→1536": (576, 1536),
    "SmolLM2 down 1536→576": (1536, 576),
}
PACKED_ONLY_AT_M1 = {"Llama-3-8B q+k+v packed 4096→6144", "Llama-3-8B gate+up packed 4096→28672"}  # decode's shapes
ROWS = (1,) if QUICK else (1, 16, 64)
CASES = [(shape, m) for shape in SHAPES for m in ROWS if m == 1 or shape not in PACKED_ONLY_AT_M1]
GENERIC_M1_FLOOR = 1.5  # W4 5.10 against fp16 at M = 1 on Llama-3-8B shapes, any card
W4, W8 = f"W4 g{GROUP} target kernel (5.10)", "W8 per-channel target kernel (5.10)"


def w4_buffers(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """5.3's W4 buffers (packed codes, fp16 scales, uint8 zero points) from the kata's RTN, and the codes."""
    q, scale, zero = quantize_groups(w.float(), 4, GROUP)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8), scale.half(), zero.to(torch.uint8), q


def formats(k: int, n: int, m: int) -> dict:
    """name → (callable, weight bytes it must read), all on the same random weight and fp16 input."""
    from exercises.ex5_10_int4_kernel import prepare, quantized_matmul

    g = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(n, k, device="cuda", generator=g) * 0.02
    x = torch.randn(m, k, device="cuda", generator=g).half()
    w16 = w.half()
    qweight, scale, zero, q = w4_buffers(w)
    kernel4 = prepare(qweight, scale, zero, 4, GROUP)
    q8, scale8, _ = quantize_groups(w, 8, None, symmetric=True)
    kernel8 = prepare(q8.to(torch.int8), scale8.half(), None, 8, None)
    w4_bytes = n * k // 2 + n * (k // GROUP) * 4

    def dequantize_then_matmul():  # what 5.3's forward does on a GPU: ŵ in memory, then cuBLAS
        codes = torch.stack((qweight & 0xF, qweight >> 4), dim=-1).reshape(n, k // GROUP, GROUP).half()
        w_hat = (codes - zero.half()[..., None]) * scale[..., None]
        return F.linear(x, w_hat.reshape(n, k))

    result = {"fp16 F.linear": (lambda: F.linear(x, w16), n * k * 2),
              "W4 dequantize + matmul (eager)": (dequantize_then_matmul, w4_bytes)}
    if gpu_paths().tinygemm:
        packed, scales_and_zeros = tinygemm_operands(q, scale, zero)
        xb = x.bfloat16()
        result[f"W4 g{GROUP} tinygemm"] = (lambda: torch._weight_int4pack_mm(xb, packed, GROUP, scales_and_zeros),
                                          w4_bytes)
    if versions()["gemlite"] and gemlite_tuned(m, n, k):
        gemlite = gemlite_linear(qweight, scale, zero)
        result[f"W4 g{GROUP} GemLite"] = (lambda: gemlite(x), w4_bytes)
    result[W4] = (lambda: quantized_matmul(x, kernel4), w4_bytes)
    result[W8] = (lambda: quantized_matmul(x, kernel8), n * k + n * 2)
    return result


def searched_launch(m: int, n: int, k: int, num_bits: int) -> str | None:
    """The launch the target's kernel chose by timing on this device (the reference's _tuned), if it keeps one."""
    import exercises.ex5_10_int4_kernel as target

    tuned = getattr(target, "_tuned", {})
    return next((str(v) for key, v in tuned.items() if key[:3] == (m, n, k) and key[4] == num_bits), None)


@pytest.mark.parametrize(("shape", "m"), CASES)
def test_matmul_formats_side_by_side(benchmark, shape, m, copy_limit):
    k, n = SHAPES[shape]
    candidates = formats(k, n, m)
    results = {}

    def measure():
        for name, (fn, weight_bytes) in candidates.items():
            results[name] = {"device_us": graph_time_us(fn), "eager_us": eager_time_us(fn, reps=20),
                             "weight_bytes": weight_bytes}

    benchmark.pedantic(measure, rounds=1, iterations=1)
    results[W4]["launch"], results[W8]["launch"] = searched_launch(m, n, k, 4), searched_launch(m, n, k, 8)
    fp16 = results["fp16 F.linear"]["device_us"]
    ratios = {name: fp16 / r["device_us"] for name, r in results.items()}
    info = {"shape": shape, "K": k, "N": n, "M": m, **machine(), "copy_bandwidth": copy_limit, "results": results,
            "ratios": ratios}
    name = f"kernel_{k}x{n}_m{m}.json"
    floors = info["floors"] = committed_floors(name, (W4, W8), info["device"], "kernel")
    benchmark.extra_info.update(info)
    print("\n" + kernel_table([write(name, info)]))
    assert results[W4]["device_us"] < results["W4 dequantize + matmul (eager)"]["device_us"], "slower than dequantizing"
    if m == 1 and shape.startswith("Llama-3-8B"):
        assert ratios[W4] >= GENERIC_M1_FLOOR, f"W4 at M = 1 only {ratios[W4]:.2f}× fp16 (floor {GENERIC_M1_FLOOR}×)"
    for key, floor in floors.items():
        assert ratios[key] >= floor, f"{key}: {ratios[key]:.2f}× fp16; committed − {NOISE['kernel']:.0%}: {floor:.2f}×"
