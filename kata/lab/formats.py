"""Lab section 7: every format on the same model — bits, measured bytes, perplexity, KL, CPU decode speed —
with the Pareto picture and the GPU benchmark's figures.

第 7 节：同一模型上的所有格式：比特、实测字节、困惑度、KL、CPU 解码速度，外加帕累托图与 GPU 基准数字。
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from kata.decode import NEW_TOKENS, RUNS, decode_speed
from kata.lab.context import GROUP_SIZE, Context, say
from kata.llama import replace_linears
from kata.report import markdown_table

PROMPT_TOKENS = 64
BLOCK_FORMATS = ("Q8_0", "Q4_0", "Q4_1", "MXFP4", "NVFP4")  # 5.12: llama.cpp's blocks and the microscaling formats
FORMAT_NAMES = ("BF16", "FP8 E4M3 weight-only", "W8A16 int8 per channel", "W8A8 naive, per-tensor",
                "W8A8 naive, per-token", "W8A8 SmoothQuant, per-tensor", "W8A8 SmoothQuant, per-token",
                f"W4A16 RTN g{GROUP_SIZE}", f"NF4 g{GROUP_SIZE}", *(f"{f} (GGUF)" for f in BLOCK_FORMATS))
BENCH_RESULTS = (Path("bench-results"), Path("tests/benchmarks/results"))  # nox -s bench's JSON; the committed run


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
    """Batch-1 decode tokens/s of each model in the benchmark's decode JSON, × against the bf16 compiled graph."""
    lines = []
    for path in sorted(folder.glob("decode_*.json")):
        info = json.loads(path.read_text(encoding="utf-8"))
        batch1 = {name.removesuffix(", batch 1"): r["tokens_per_s"] for name, r in info["results"].items()
                  if name.endswith(", batch 1")}
        base = batch1["bf16 compiled graph"]
        cells = ", ".join(f"{name} {speed:.0f} ({speed / base:.2f}×)" for name, speed in batch1.items())
        lines.append(f"- {info['model']} shapes ({info['layers']} layers, random weights): {cells}")
    if not lines:
        return ""
    return ("\n\nGPU decode, batch 1, tokens/s (lm_head bf16; × = against bf16, compiled, one CUDA graph per "
            "token):\n"
            + "\n".join(lines))


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


class BlockFormatLinear(nn.Module):
    """A linear whose weight is stored as 5.12's block bytes (and NVFP4's tensor scale), dequantized by the
    target's 5.12 on every call: the real bytes of the format, the readable path, no fused kernel."""

    def __init__(self, layer: nn.Linear, q512: ModuleType, fmt: str) -> None:
        super().__init__()
        name = fmt.lower()
        stored = getattr(q512, f"quantize_{name}")(layer.weight.detach().float())
        data, self.tensor_scale = stored if isinstance(stored, tuple) else (stored, None)
        self.register_buffer("data", data)
        self.dequantize = getattr(q512, f"dequantize_{name}")
        self.bias = layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantize(self.data) if self.tensor_scale is None else self.dequantize(self.data, self.tensor_scale)
        return F.linear(x, w.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


def formats_table(ctx: Context, calibrated: dict[str, dict]) -> str:
    """Every format on the same model: bits (formula), measured bytes, perplexity, KL, CPU decode tokens/s; the
    calibrated W4 / W3 results of section 6 (`calibrated`, by label) join as rows of their own."""
    q53, q57, q58, q512 = (ctx.module(n) for n in ("ex5_3_quant_linear", "ex5_7_smoothquant",
                                                    "ex5_8_compare_formats", "ex5_12_gguf_formats"))
    bits = ctx.module("ex1_1_weight_memory").bits_per_weight
    Format = q58.Format
    ids, picture = ctx.eval_ids, ctx.settings.picture
    prompt = ids[:1, :PROMPT_TOKENS]
    calib = ctx.calib_ids[::16]  # 2 windows, far apart in the text
    linears = [m for n, m in ctx.fresh_model().named_modules() if n.endswith("_proj")]

    def per_row(dtype: str, scale_bits: int) -> float:  # one scale per output row: the row is the group
        total = sum(m.weight.numel() for m in linears)
        return sum(m.weight.numel() * bits(dtype, group_size=m.in_features, scale_bits=scale_bits)
                   for m in linears) / total

    no_kernel = "no fused CPU kernel in torch (dequantizes every call) / torch 没有融合 CPU 核"
    formats = [
        Format("BF16", 16.0),
        Format("FP8 E4M3 weight-only", per_row("fp8", 32),
               lambda m: replace_linears(m.layers, q58.FP8Linear.from_linear), no_speed=no_kernel),
        Format("W8A16 int8 per channel", per_row("int8", 16), lambda m: q53.quantize_model(m, 8, None)),
        *[Format(f"W8A8 naive, per-{g}", per_row("int8", 32), lambda m, g=g: q57.swap_linears(m.layers, g))
          for g in ("tensor", "token")],
        *[Format(f"W8A8 SmoothQuant, per-{g}", per_row("int8", 32),
                 lambda m, g=g: q57.smoothquant_model(m, calib, g)) for g in ("tensor", "token")],
        Format(f"W4A16 RTN g{GROUP_SIZE}", bits("int4", group_size=GROUP_SIZE, zero_point_bits=8),
               lambda m: q53.quantize_model(m, 4, GROUP_SIZE)),
        Format(f"NF4 g{GROUP_SIZE}", bits("int4", group_size=GROUP_SIZE),
               lambda m: replace_linears(m.layers, lambda layer: q58.NF4Linear.from_linear(layer, GROUP_SIZE)),
               no_speed=no_kernel),
        *[Format(f"{fmt} (GGUF)", q512.bits_per_weight(fmt),
                 lambda m, fmt=fmt: replace_linears(m.layers, lambda layer: BlockFormatLinear(layer, q512, fmt)),
                 no_speed="llama.cpp runs these; here they dequantize every call / llama.cpp 有内核，这里每次反量化")
          for fmt in BLOCK_FORMATS],
    ]
    if [f.name for f in formats] != list(FORMAT_NAMES):
        raise RuntimeError("FORMAT_NAMES 与第 7 节的格式不一致 / FORMAT_NAMES disagrees with section 7's formats")
    if ctx.settings.only_formats:
        formats = [f for f in formats if f.name in ctx.settings.only_formats]
    rows = [{"format": "baseline (fp32)", "bits_per_weight": 32.0, "ppl": ctx.baseline_ppl, "kl": 0.0,
             "weight_bytes": sum(m.weight.nbytes for m in linears), "tokens_per_s": None,
             "note": "section 6; the reference for every KL"}]
    started = time.perf_counter()
    rows += q58.compare_formats(ctx.fresh_model, formats, ids, baseline=ctx.baseline,
                                progress=lambda message: say(f"{message} ({time.perf_counter() - started:.0f} s)"),
                                speed=lambda m: decode_speed(m, prompt)["tokens_per_s"])
    by_name = {row["format"]: row for row in rows}
    w4 = by_name.get(f"W4A16 RTN g{GROUP_SIZE}", {"bits_per_weight": bits("int4", group_size=GROUP_SIZE,
                                                                          zero_point_bits=8),
                                                   "weight_bytes": None, "tokens_per_s": None})
    for label, name in ((f"W4 AWQ + clip g{GROUP_SIZE}", "W4 AWQ + clip search"),
                        (f"W4 GPTQ + act-order g{GROUP_SIZE}", "W4 GPTQ + act-order"),
                        (f"W3 GPTQ + act-order g{GROUP_SIZE}", "W3 GPTQ + act-order")):
        if name in calibrated:  # computed in section 6; same storage as RTN, only the codes differ
            result, w4_like = calibrated[name], name.startswith("W4")
            bpw = w4["bits_per_weight"] if w4_like else 3 + (16 + 8) / GROUP_SIZE  # 3-bit codes, same metadata
            rows.append({"format": label, "bits_per_weight": bpw, "ppl": result["ppl"], "kl": result["kl"],
                         "weight_bytes": w4["weight_bytes"] if w4_like else None,
                         "tokens_per_s": w4["tokens_per_s"] if w4_like else None,
                         "note": "section 6 (fp32 activations); stored and run as W4A16 RTN g64" if w4_like
                         else "section 6 (fp32 activations); no 3-bit storage or kernel here"})
    bf16 = by_name.get("BF16", {}).get("tokens_per_s")
    table = markdown_table(
        ("format", "bits/weight (formula)", "linear bytes (measured)", "perplexity", "KL to baseline",
         "CPU decode tok/s", "vs BF16", "note"),
        [(r["format"], f"{r['bits_per_weight']:.3f}",
          f"{r['weight_bytes']:,}" if r["weight_bytes"] is not None else "—", f"{r['ppl']:.2f}",
          f"{r['kl']:.4f}", f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] else "—",
          f"{r['tokens_per_s'] / bf16:.2f}×" if r["tokens_per_s"] and bf16 else "—", r["note"]) for r in rows])
    fastest = max((r for r in rows if r["tokens_per_s"] and r["format"] not in ("BF16", "baseline (fp32)")),
                  key=lambda r: r["tokens_per_s"], default=None)
    summary = (f" Fastest quantized format: {fastest['format']}, {fastest['tokens_per_s']:.1f} tok/s = "
               f"{fastest['tokens_per_s'] / bf16:.2f}× BF16." if fastest and bf16 else "")
    ctx.points.extend({**r, "section": 7} for r in rows)
    if picture is not None:
        drawn = draw_formats(ctx.points, picture)
        summary += f"\n\n![formats: KL against bits and speed]({picture.name})" if drawn else (
            "\n\n_(matplotlib 未安装，没有画图 / matplotlib not installed: no picture)_")
    return table + (
        f"\n\nSame model, same {ids.shape[0]} × {ids.shape[1]} evaluation windows; KL to the fp32 baseline. "
        f"Every format but the baseline runs as deployed: bf16 activations (W8A8: int8 activations into "
        f"torch._int_mm), embeddings, norms and lm_head in bf16. Bits/weight from 1.1's formula (per-channel "
        f"rows averaged over the layers' widths); bytes measured on the quantized linears. W4 g128 is left "
        f"out: 128 does not divide the 576-wide inputs. Decode: batch 1, {PROMPT_TOKENS}-token prompt, "
        f"{NEW_TOKENS} new tokens with a KV cache, median of {RUNS} runs after a warm-up, "
        f"{torch.get_num_threads()} threads. SmoothQuant: α searched per place on {calib.shape[0]} × "
        f"{calib.shape[1]} calibration tokens. (GGUF) rows: 5.12's block bytes (llama.cpp's Q8_0 / Q4_0 / Q4_1, "
        f"OCP MXFP4, NVIDIA NVFP4 with its fp32 tensor scale), bits/weight from the block size; the embedding stays "
        f"bf16 here, as in every other row.{summary}{gpu_note()}")
