"""Launch sweep of the reference 5.10 kernels on the device: many (tile, warps, stages, split) per problem, each timed
like the benchmark (kata.timing.graph_time_us: a CUDA graph of calls, L2 flushed before each), beside fp16
F.linear and a bare read of the same bytes; writes the best launches per problem as a Markdown table and JSON
(OUT_DIR/sweep_5_10.md, .json; the committed run's in docs/results/).

扫描 5.10 参考内核的启动参数（tile、warps、stages、split-K），与 fp16 及"只读同样字节"的内核同一计时器对比。
    PYTHONPATH=. python3 -m tests.benchmarks.sweep OUT_DIR [budget seconds]
Compiling runs first in parallel processes (Triton's disk cache), timing then in this one. Where the table's best
launch beats the reference's own choice, its candidates (_GEMV_TILES, _DOT_TILES) are what to change.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

import reference.ex5_10_int4_kernel as ref
from kata.timing import copy_bandwidth, graph_time_us
from tests.benchmarks.common import machine

SHAPES = {"q/o": (4096, 4096), "k/v": (4096, 1024), "gate/up": (4096, 14336), "down": (14336, 4096),
          "q+k+v": (4096, 6144), "gate+up": (4096, 28672), "8192²": (8192, 8192)}
CASES = [(name, m, bits) for m in (1, 16, 64) for bits in (4, 8) for name in SHAPES
         if (m == 1 or name not in ("k/v", "q+k+v", "gate+up")) and (m == 1 or bits == 4)]
GROUP = 64
PROGRAMS_PER_SM = (1, 2, 4, 8, 16)


def weights(k: int, n: int, bits: int) -> ref.KernelWeights:
    """Random codes in the kernel's layout (speed only: the values do not matter)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    if bits == 4:
        q = torch.randint(-2**31, 2**31 - 1, (k // 8, n), device="cuda", generator=g, dtype=torch.int32)
        s = torch.rand(k // GROUP, n, device="cuda", generator=g).half() * 0.01
        return ref.KernelWeights(q, s, torch.randint(0, 16, s.shape, device="cuda", generator=g).half(), 4, GROUP)
    q = torch.randint(-128, 128, (k, n), device="cuda", generator=g, dtype=torch.int8)
    s = torch.rand(1, n, device="cuda", generator=g).half() * 0.01
    return ref.KernelWeights(q, s, torch.zeros_like(s), 8, k)


def gemv_tiles(bits: int) -> list[ref._Launch]:
    """GEMV tiles whose step gives each thread 64–256 bytes of codes (more spills registers and takes ptxas minutes)
    and at least 4 bytes of every code row."""
    rows = (4, 8) if bits == 4 else (8, 16, 32)
    word = 4 if bits == 4 else 1  # bytes of one row entry: an int32 word (8 codes) or an int8 code
    stages = (1, 3) if bits == 4 else (3,)
    return [ref._Launch(True, bn, 1, r, 1, w, st)
            for r, bn, w, st in itertools.product(rows, (256, 512, 1024, 2048), (2, 4, 8), stages)
            if 64 <= r * bn * word // (32 * w) <= 256 and bn * word >= 4 * 32 * w]


def launches(m: int, n: int, k: int, bits: int, sms: int) -> list[ref._Launch]:
    """Every tile × warps × stages, each with the splits that put about PROGRAMS_PER_SM programs on an SM."""
    if m <= ref.GEMV_MAX_M:
        tiles = [t for t in gemv_tiles(bits) if t.block_n <= n]
    elif bits == 8:
        tiles = ref._tiles(m, k, bits)
    else:
        block_ms, block_ns = ((16,), (64, 128, 256)) if m <= 16 else ((64,), (64, 128))
        tiles = [ref._Launch(False, bn, 1, bk, bm, w, st)
                 for bm, bk, bn, w, st in itertools.product(block_ms, (32, 64), block_ns, (4, 8), (3, 4))
                 if not (bn == 64 and w == 8)]
    out = []
    for tile in dict.fromkeys(tiles):
        per_split = tile.grid(m, n)[0] * tile.grid(m, n)[1]
        splits = ref._splits(k, tile.k_step(bits))
        chosen = {min(splits, key=lambda s: abs(per_split * s - p * sms)) for p in PROGRAMS_PER_SM}
        out += [replace(tile, split=s) for s in sorted(chosen)]
    return out


@triton.jit
def _read(w_ptr, out_ptr, WORDS_PER_PROGRAM, BLOCK: tl.constexpr):
    """Read WORDS_PER_PROGRAM int32 words, xor them: the least a kernel that reads these bytes can take."""
    offs = tl.program_id(0) * WORDS_PER_PROGRAM + tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK,), dtype=tl.int32)
    for start in range(0, WORDS_PER_PROGRAM, BLOCK):
        acc ^= tl.load(w_ptr + offs + start, eviction_policy="evict_first")
    tl.store(out_ptr + tl.program_id(0) * BLOCK + tl.arange(0, BLOCK), acc)


def read_floor(words: torch.Tensor) -> tuple[float, str]:
    """Best time (µs) of _read over a few block sizes and program counts, and which."""
    flat, best = words.view(torch.int32).reshape(-1), (math.inf, "")
    for block, warps, per in itertools.product((1024, 2048, 4096), (4, 8), (1, 2, 4, 8, 16)):
        programs = flat.numel() // (block * per)
        if programs < 1 or flat.numel() % (block * per):
            continue
        out = torch.empty(programs * block, dtype=torch.int32, device="cuda")
        t = graph_time_us(lambda p=programs, o=out, b=block, e=per, w=warps: _read[(p,)](flat, o, b * e, BLOCK=b,
                                                                                        num_warps=w),
                          calls=10, reps=3)
        best = min(best, (t, f"BLOCK {block}, {warps} warps, {per} blocks a program"))
    return best


def jobs() -> list[tuple]:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    return [(name, m, bits, launch) for name, m, bits in CASES
            for launch in launches(m, SHAPES[name][1], SHAPES[name][0], bits, sms)]


def compile_some(part: list[tuple]) -> int:
    """Run each launch once (a worker process): Triton compiles it into its disk cache."""
    made = {}
    for i, (name, m, bits, launch) in enumerate(part):
        if i % 10 == 0:
            print(f"worker {os.getpid()}: {i}/{len(part)}", flush=True)
        k, n = SHAPES[name]
        if (name, bits) not in made:
            made[name, bits] = weights(k, n, bits)
        ref._run(launch, torch.randn(m, k, device="cuda").half(), made[name, bits])
    torch.cuda.synchronize()
    return len(part)


def case(name: str, m: int, bits: int, copy: float, sms: int) -> tuple[dict, list[str]]:
    """One problem: fp16, the read floor (M = 1), the reference's own choice and every launch, best first."""
    k, n = SHAPES[name]
    w, x = weights(k, n, bits), torch.randn(m, k, device="cuda").half()
    w16 = torch.randn(n, k, device="cuda").half()
    fp16 = graph_time_us(lambda: F.linear(x, w16))
    nbytes = w.qweight.numel() * w.qweight.element_size() + 2 * w.scales.numel() * 2
    floor = read_floor(w.qweight) if m == 1 else (math.nan, "")
    ref._tuned.clear()
    chosen = graph_time_us(lambda: ref.quantized_matmul(x, w))
    timed = sorted(((graph_time_us(lambda la=la: ref._run(la, x, w), calls=10, reps=3), la)
                    for la in launches(m, n, k, bits, sms)), key=lambda pair: pair[0])
    first = ref._candidates(m, n, k, w.group_size, bits, 0)[0]
    error = (ref._run(timed[0][1], x, w).float() - ref._run(first, x, w).float()).abs().max()
    row = {"shape": f"{name} {k}→{n}", "M": m, "bits": bits, "fp16_us": fp16, "read_floor_us": floor[0],
           "read_floor": floor[1], "chosen_us": chosen, "chosen": str(list(ref._tuned.values())),
           "error_vs_first": float(error), "best": [{"us": t, **asdict(la)} for t, la in timed[:8]]}

    def pct(t: float) -> str:
        return f"{nbytes / (t * 1e-6) / copy:.0%}"

    lines = [f"\n**{row['shape']}, M = {m}, W{bits}** — fp16 {fp16:.1f} µs; reference's choice {chosen:.1f} µs "
             f"({fp16 / chosen:.2f}×, {pct(chosen)}) {row['chosen']}; read floor {floor[0]:.1f} µs "
             f"({pct(floor[0])}, {floor[1]}); best vs first launch max |Δ| {float(error):.2g}\n",
             "| µs | × fp16 | of copy | launch |", "| --- | --- | --- | --- |"]
    lines += [f"| {t:.2f} | {fp16 / t:.2f}× | {pct(t)} | {la} |" for t, la in timed[:8]]
    return row, lines


def main(out: Path, budget: float) -> None:
    start, todo = time.time(), jobs()
    workers = min(14, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        done = sum(pool.map(compile_some, [todo[i::workers] for i in range(workers)]))
    print(f"compiled {done} launches in {time.time() - start:.0f} s", flush=True)
    copy, sms = copy_bandwidth(), torch.cuda.get_device_properties(0).multi_processor_count
    info = machine()
    head = (f"# 5.10 launch sweep · {info['device']} · driver {info['driver']} · torch {info['torch']} · Triton "
            f"{info['triton']} · {info['date']} · measured copy bandwidth {copy / 1e12:.2f} TB/s\n\n"
            f"Each launch timed as the benchmark times it (CUDA graph of calls, L2 flushed; µs of device time); the "
            f"read floor is a kernel that only reads the same bytes. `PYTHONPATH=. python3 -m tests.benchmarks.sweep "
            f"OUT_DIR`.\n")
    rows, lines = [], [head]
    out.mkdir(parents=True, exist_ok=True)
    for name, m, bits in CASES:
        if time.time() - start > budget:
            lines.append(f"\n(budget of {budget:.0f} s spent: {name} M = {m} W{bits} and after not swept)")
            break
        row, more = case(name, m, bits, copy, sms)
        rows.append(row)
        lines += more
        print("\n".join(more), flush=True)
        (out / "sweep_5_10.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (out / "sweep_5_10.json").write_text(json.dumps({**info, "copy_bandwidth": copy, "cases": rows}, indent=1),
                                             encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 400)
