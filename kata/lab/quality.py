"""Lab section 6: RTN, AWQ and GPTQ on the same real model at W4 and W3 g64 — perplexity, KL, gap recovered.

第 6 节：同一模型上 RTN、AWQ、GPTQ 的质量（练习目标 b：用校准数据跑 GPTQ / AWQ 流程，看误差怎么变）。
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from kata.evaluate import evaluate
from kata.lab.context import GROUP_SIZE, Context, block_progress, say
from kata.llama import Llama
from kata.oracles import round_to_nearest
from kata.report import markdown_table

QUALITY_BITS = (4, 3)
LOWER_BITS_METHODS = ("RTN", "AWQ + clip search", "GPTQ + act-order")  # W3 repeats only the full methods
FULL_ONLY_METHODS = ("AWQ scales → GPTQ + act-order",)  # slowest (2 min a bit width): only with --full


def methods(ctx: Context) -> list[tuple[str, Callable[[Llama, int], object]]]:
    """Section 6's methods by name, each quantizing a model in place at a bit width with the target's 5.5 / 5.6."""
    awq = ctx.module("ex5_5_awq").awq_quantize_model
    gptq = ctx.module("ex5_6_gptq").gptq_quantize_model
    calib = ctx.calib_ids
    return [
        ("RTN", lambda m, b: round_to_nearest(m, b, GROUP_SIZE)),
        ("AWQ (scales only)", lambda m, b: awq(m, calib, b, GROUP_SIZE, clip=False)),
        ("AWQ + clip search", lambda m, b: awq(m, calib, b, GROUP_SIZE)),
        ("GPTQ", lambda m, b: gptq(m, calib, b, GROUP_SIZE, act_order=False)),
        ("GPTQ + act-order", lambda m, b: gptq(m, calib, b, GROUP_SIZE, act_order=True)),
        ("AWQ scales → GPTQ + act-order", lambda m, b: (awq(m, calib, b, GROUP_SIZE, round_weights=False),
                                                          gptq(m, calib, b, GROUP_SIZE, act_order=True))),
    ]


def runs_at(ctx: Context, name: str, bits: int) -> bool:
    """Whether `name` runs at `bits`: every method at W4, W3 only the full ones, --full everything."""
    if ctx.settings.full:
        return True
    return name not in FULL_ONLY_METHODS and (bits == QUALITY_BITS[0] or name in LOWER_BITS_METHODS)


def quality_table(ctx: Context) -> tuple[str, dict[str, dict]]:
    """Baseline, RTN, AWQ and GPTQ at W4 g64 and W3 g64 on the same model: perplexity, KL, recovered gap
    = (ppl_RTN − ppl) / (ppl_RTN − ppl_baseline), KL cut = 1 − KL / KL_RTN.
    Returns the table and each method's result by label ("W4 GPTQ + act-order" → its evaluate() dict)."""
    ids, baseline = ctx.eval_ids, ctx.baseline
    base_ppl = ctx.baseline_ppl
    say(f"baseline: perplexity {base_ppl:.2f}")
    calibrated: dict[str, dict] = {}
    rows = [("baseline (dequantized Q4_1)", "—", f"{base_ppl:.2f}", "0", "—", "—", "—")]
    for bits in QUALITY_BITS:
        rtn_result = None
        for name, method in methods(ctx):
            if not runs_at(ctx, name, bits):
                continue
            model = ctx.fresh_model()
            label = f"W{bits} {name}"
            started = time.perf_counter()
            with block_progress(model, label):
                method(model, bits)
            seconds = time.perf_counter() - started
            result = evaluate(model, ids, baseline)
            rtn_result = rtn_result or result
            is_calibrated = name != "RTN"
            recovered = (rtn_result["ppl"] - result["ppl"]) / (rtn_result["ppl"] - base_ppl)
            kl_cut = 1 - result["kl"] / rtn_result["kl"]
            rows.append((name, f"W{bits} g{GROUP_SIZE} asym", f"{result['ppl']:.2f}", f"{result['kl']:.4f}",
                         f"{recovered:.0%}" if is_calibrated else "—", f"{kl_cut:.0%}" if is_calibrated else "—",
                         f"{seconds:.0f}" if is_calibrated else "—"))
            calibrated[label] = result
            say(f"{label}: perplexity {result['ppl']:.2f}, KL {result['kl']:.4f}, {seconds:.0f} s")
    table = markdown_table(("method", "format", "perplexity", "KL to baseline", "ppl gap recovered",
                            "KL cut vs RTN", "time (s)"), rows)
    return table + quality_note(ctx), calibrated


def quality_note(ctx: Context) -> str:
    """What section 6 evaluated and calibrated on, and how its columns are computed."""
    ids, calib = ctx.eval_ids, ctx.calib_ids
    return (
        f"\n\nEvaluation: *Persuasion*, {ids.shape[0]} windows × {ids.shape[1]} tokens "
        f"({ids.shape[0] * (ids.shape[1] - 1):,} predicted tokens). Calibration: *Pride and Prejudice*, "
        f"{calib.shape[0]} windows × {calib.shape[1]} tokens. Every linear of every block; embeddings / lm_head "
        f"untouched. Recovered = (ppl_RTN − ppl) / (ppl_RTN − ppl_baseline); KL cut = 1 − KL / KL_RTN; time on "
        f"{torch.get_num_threads()} threads."
        + ("" if ctx.settings.full else
           " `--full` adds AWQ scales → GPTQ and the W3 ablations (about 8 minutes more)."))
