"""Lab section 7: every format on the same model — bits, measured bytes, perplexity, KL, CPU decode speed —
with the Pareto picture and the GPU benchmark's figures.

第 7 节：同一模型上的所有格式：比特、实测字节、困惑度、KL、CPU 解码速度，外加帕累托图与 GPU 基准数字。
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from kata import cpu
from kata.decode import NEW_TOKENS, RUNS, decode_speed
from kata.lab.context import GROUP_SIZE, Context, say
from kata.lab.format_registry import BF16, FORMATS, W4A16RTN, int8_products_for_this_cpu, smoothquant_windows
from kata.llama import cast_floats
from kata.report import markdown_table

PROMPT_TOKENS = 64
DEPLOYED_DTYPE = torch.bfloat16  # the dtype the deployed rows decode in: torch's int4 / int8 CPU kernels take bf16
BASELINE = "baseline (fp32)"
FLOAT_PATHS = {BASELINE: "fp32", BF16.name: "BF16"}  # the rows that run a float model: speed's yardsticks
BENCH_RESULTS = (Path("bench-results"), Path("docs/results"))  # nox -s bench's JSON here; the committed run


def gpu_note(folders: tuple[Path, ...] = BENCH_RESULTS) -> str:
    """The GPU benchmark's 8192 × 8192 figures (device time from a CUDA graph, host launch excluded): from
    `nox -s bench` here if it ran, else the committed run."""
    paths = next((found for folder in folders if (found := sorted(folder.glob("kernel_8192x8192_m*.json")))), [])
    lines = []
    for path in paths:
        info = json.loads(path.read_text(encoding="utf-8"))
        fp16 = info["results"]["fp16 F.linear"]["device_us"]
        cells = ", ".join(f"{name} {r['device_us']:.1f} µs ({fp16 / r['device_us']:.2f}×)"
                          for name, r in info["results"].items())
        lines.append(f"- M = {info['M']}: {cells}")
    if not lines:
        return "\n\nGPU: 没有基准结果 / no benchmark results; `nox -s bench` on a CUDA machine writes them."
    info = json.loads(paths[0].read_text(encoding="utf-8"))
    return (f"\n\nGPU, one 8192 × 8192 layer (`{paths[0].parent}/`, {info['device']}, torch {info['torch']}, Triton "
            f"{info['triton']}, L2 flushed, device time of a CUDA graph; × = speed against fp16 in the same run):\n"
            + "\n".join(lines) + _decode_note(paths[0].parent))


def _decode_note(folder: Path) -> str:
    """Batch-1 decode tokens/s of each model in the benchmark's decode JSON, × against the float row the run
    chose as its base ("bf16 compiled graph" on a card with native bf16, fp16 on a T4, a plain graph when quick)."""
    lines = []
    for path in sorted(folder.glob("decode_*.json")):
        info = json.loads(path.read_text(encoding="utf-8"))
        batch1 = {name.removesuffix(", batch 1"): r["tokens_per_s"] for name, r in info["results"].items()
                  if name.endswith(", batch 1")}
        base = batch1[info["base"]]
        cells = ", ".join(f"{name} {speed:.0f} ({speed / base:.2f}×)" for name, speed in batch1.items())
        lines.append(f"- {info['model']} shapes ({info['layers']} layers, random weights, lm_head {info['lm_head']}; "
                     f"× = against {info['base']}): {cells}")
    if not lines:
        return ""
    return "\n\nGPU decode, batch 1, tokens/s (a compiled graph is one CUDA graph per token):\n" + "\n".join(lines)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (fewer bits and less KL), sorted by bits."""
    return sorted(p for p in points if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points))


SECTIONS = {7: ("§7 formats", "tab:blue"), 8: ("§8 mixed precision", "tab:orange"), 9: ("§9 QAT", "tab:purple")}


def draw_formats(rows: list[dict], path: Path) -> list[str]:
    """Two panels: KL (log) against bits per weight with the Pareto front; CPU tokens/s against KL. Points of
    sections 8 and 9 (a row's "section", default 7) get their own colour. Returns the legend's labels ([] when
    matplotlib is missing: nothing drawn)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    shown = [r for r in rows if r["kl"] > 0]  # the baseline has no KL to plot on a log axis
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    for number, (label, colour) in SECTIONS.items():
        points = [r for r in shown if r.get("section", 7) == number]
        if points:
            left.scatter([r["bits_per_weight"] for r in points], [r["kl"] for r in points], color=colour,
                         label=label)
    for r in shown:
        left.annotate(r["format"], (r["bits_per_weight"], r["kl"]), fontsize=7, xytext=(4, 2),
                      textcoords="offset points")
    front = pareto_front([(r["bits_per_weight"], r["kl"]) for r in shown])
    left.plot(*zip(*front, strict=True), color="tab:red", drawstyle="steps-post", label="Pareto front")
    left.set(xscale="linear", yscale="log", xlabel="bits per weight (formula)", ylabel="KL to fp32 baseline (log)",
             title="quality against size")
    left.legend()
    timed = [r for r in shown if r["tokens_per_s"]]
    for r in timed:
        right.scatter(r["kl"], r["tokens_per_s"], color="tab:green")
        right.annotate(r["format"], (r["kl"], r["tokens_per_s"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    right.set(xscale="log", xlabel="KL to fp32 baseline (log)", ylabel="CPU decode tokens/s (batch 1)",
              title="speed against quality")
    labels = left.get_legend_handles_labels()[1]
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return labels


CALIBRATED = ((f"W4 AWQ + clip g{GROUP_SIZE}", "W4 AWQ + clip search"),  # (section 7's label, section 6's)
              (f"W4 GPTQ + act-order g{GROUP_SIZE}", "W4 GPTQ + act-order"),
              (f"W3 GPTQ + act-order g{GROUP_SIZE}", "W3 GPTQ + act-order"))
W4_NOTE = "section 6 (fp32 activations); stored and run as W4A16 RTN g64"
W3_NOTE = "section 6 (fp32 activations); no 3-bit storage or kernel here"


def formats_table(ctx: Context, calibrated: dict[str, dict]) -> str:
    """Every registered format (kata/lab/format_registry.py; those --formats names) on the same model: bits
    (formula), measured bytes, perplexity, KL, CPU decode tokens/s; the calibrated W4 / W3 results of section 6
    (`calibrated`, by label) join as rows of their own."""
    linears = [m for n, m in ctx.fresh_model().named_modules() if n.endswith("_proj")]
    only = ctx.settings.only_formats
    chosen = [cls(ctx, linears).target_format() for name, cls in FORMATS.items() if not only or name in only]
    rows = [baseline_row(ctx, linears)]
    rows += measure_formats(ctx, chosen)
    rows += calibrated_rows(calibrated, w4_row(ctx, linears, rows))
    ctx.points.extend({**r, "section": 7} for r in rows)
    fastest = fastest_float(rows)
    return rows_table(rows, fastest) + formats_note(ctx, fastest_line(rows, fastest) + picture_line(ctx))


def baseline_row(ctx: Context, linears: list[nn.Linear]) -> dict:
    """The fp32 model itself: the reference for every KL, and its decode speed (one of the two float yardsticks,
    fastest_float)."""
    say("baseline (fp32): timing decode …")
    speed = decode_speed(ctx.fresh_model(), ctx.eval_ids[:1, :PROMPT_TOKENS])["tokens_per_s"]
    return {"format": BASELINE, "bits_per_weight": 32.0, "ppl": ctx.baseline_ppl, "kl": 0.0,
            "weight_bytes": sum(m.weight.nbytes for m in linears), "tokens_per_s": speed,
            "note": "section 6; the reference for every KL"}


def measure_formats(ctx: Context, formats: list) -> list[dict]:
    """The target's 5.8 compare_formats over `formats` (its Format objects): one row each, quality in each row's
    dtype, CPU decode speed on a PROMPT_TOKENS-token prompt as deployed (the rest of the model in DEPLOYED_DTYPE);
    W8A8's int8 products as kata.cpu decides for this CPU."""
    prompt = ctx.eval_ids[:1, :PROMPT_TOKENS]
    started = time.perf_counter()
    with int8_products_for_this_cpu(ctx):
        return ctx.module("ex5_8_compare_formats").compare_formats(
            ctx.fresh_model, formats, ctx.eval_ids, baseline=ctx.baseline,
            progress=lambda message: say(f"{message} ({time.perf_counter() - started:.0f} s)"),
            speed=lambda m: decode_speed(cast_floats(m, DEPLOYED_DTYPE), prompt)["tokens_per_s"])


def w4_row(ctx: Context, linears: list[nn.Linear], rows: list[dict]) -> dict:
    """W4A16 RTN's measured row, or, where --formats left it out, its bits with nothing measured."""
    measured = next((r for r in rows if r["format"] == W4A16RTN.name), None)
    return measured or {"bits_per_weight": W4A16RTN(ctx, linears).bits_per_weight(), "weight_bytes": None,
                        "tokens_per_s": None}


def calibrated_rows(calibrated: dict[str, dict], w4: dict) -> list[dict]:
    """Section 6's calibrated results that ran, as rows: a W4 one is stored and runs as W4A16 RTN (`w4`, its row:
    same storage, only the codes differ); W3 has 3-bit codes with W4's metadata and no storage or kernel here."""
    w3 = {"bits_per_weight": 3 + (16 + 8) / GROUP_SIZE, "weight_bytes": None, "tokens_per_s": None}
    rows = []
    for label, name in CALIBRATED:
        if name in calibrated:
            stored, note = (w4, W4_NOTE) if name.startswith("W4") else (w3, W3_NOTE)
            rows.append({"format": label, "bits_per_weight": stored["bits_per_weight"],
                         "ppl": calibrated[name]["ppl"], "kl": calibrated[name]["kl"],
                         "weight_bytes": stored["weight_bytes"], "tokens_per_s": stored["tokens_per_s"], "note": note})
    return rows


def fastest_float(rows: list[dict]) -> tuple[str, float] | None:
    """(name, tokens/s) of the float model, fp32 or BF16, that decoded faster on this CPU: every speed's yardstick
    (measured, not assumed: bf16 in hardware need not make BF16 the faster); None when neither was timed."""
    timed = [(FLOAT_PATHS[r["format"]], r["tokens_per_s"]) for r in rows
             if r["format"] in FLOAT_PATHS and r["tokens_per_s"]]
    return max(timed, key=lambda named: named[1], default=None)


def rows_table(rows: list[dict], fastest: tuple[str, float] | None) -> str:
    """The rows as Markdown; speeds also as a ratio to the fastest float path's tokens/s (`fastest`), named in the
    column's heading."""
    name, base = fastest or ("the fastest float path", None)
    return markdown_table(
        ("format", "bits/weight (formula)", "linear bytes (measured)", "perplexity", "KL to baseline",
         "CPU decode tok/s", f"vs {name} (fastest float)", "note"),
        [(r["format"], f"{r['bits_per_weight']:.3f}",
          f"{r['weight_bytes']:,}" if r["weight_bytes"] is not None else "—", f"{r['ppl']:.2f}",
          f"{r['kl']:.4f}", f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] else "—",
          f"{r['tokens_per_s'] / base:.2f}×" if r["tokens_per_s"] and base else "—", r["note"]) for r in rows])


def fastest_line(rows: list[dict], fastest: tuple[str, float] | None) -> str:
    """The fastest quantized format against the fastest float path ("" when nothing was timed)."""
    quantized = max((r for r in rows if r["tokens_per_s"] and r["format"] not in FLOAT_PATHS),
                    key=lambda r: r["tokens_per_s"], default=None)
    if quantized is None or fastest is None:
        return ""
    return (f" Fastest quantized format: {quantized['format']}, {quantized['tokens_per_s']:.1f} tok/s = "
            f"{quantized['tokens_per_s'] / fastest[1]:.2f}× {fastest[0]}, the fastest float path here.")


def picture_line(ctx: Context) -> str:
    """Draw the picture of every point so far where the settings ask for one; the Markdown that shows it."""
    picture = ctx.settings.picture
    if picture is None:
        return ""
    if draw_formats(ctx.points, picture):
        return f"\n\n![formats: KL against bits and speed]({picture.name})"
    return "\n\n_(matplotlib 未安装，没有画图 / matplotlib not installed: no picture)_"


def formats_note(ctx: Context, summary: str) -> str:
    """What the table measured and how, then `summary` and the GPU benchmark's figures."""
    ids, calib = ctx.eval_ids, smoothquant_windows(ctx)
    return (
        f"\n\nSame model, same {ids.shape[0]} × {ids.shape[1]} evaluation windows; KL to the fp32 baseline. "
        f"This CPU: {cpu.name()} ({cpu.paths().why}). Quality: every format but BF16 measured with the rest of "
        f"the model and the activations in {str(cpu.paths().float_dtype).removeprefix('torch.')} (bf16 where "
        f"the CPU has it in hardware, else float32; W8A8: int8 activations into torch._int_mm, or its exact "
        f"float32 emulation where that is slow). Speed: every format decodes as deployed, with bf16 activations, "
        f"embeddings, norms and lm_head (torch's int4 / int8 CPU kernels take bf16), held against the faster "
        f"float model this CPU ran, fp32 or BF16. "
        f"Bits/weight from 1.1's formula (per-channel "
        f"rows averaged over the layers' widths); bytes measured on the quantized linears. W4 g128 is left "
        f"out: 128 does not divide the 576-wide inputs. Decode: batch 1, {PROMPT_TOKENS}-token prompt, "
        f"{NEW_TOKENS} new tokens with a KV cache, median of {RUNS} runs after a warm-up, "
        f"{torch.get_num_threads()} threads. SmoothQuant: α searched per place on {calib.shape[0]} × "
        f"{calib.shape[1]} calibration tokens. (GGUF) rows: 5.12's block bytes (llama.cpp's Q8_0 / Q4_0 / Q4_1, "
        f"OCP MXFP4, NVIDIA NVFP4 with its fp32 tensor scale), bits/weight from the block size; the embedding stays "
        f"bf16 here, as in every other row.{summary}{gpu_note()}")
