"""Lab section 8: layer sensitivity, mixed precision at equal bytes, and self-check Q3 decided from them (5.11).

第 8 节：层敏感度、同等字节下的混合精度，以及据此回答自测题 3（PTQ / 混合精度 / QAT）。
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

from kata.evaluate import evaluate, log_probs, perplexity
from kata.lab.context import GROUP_SIZE, Context, block_progress, say
from kata.llama import Llama
from kata.report import markdown_table
from kata.sequential import INPUT_GROUPS, block_linear_inputs, first_block_input, gram, linears, rope, run_block

SENSITIVITY_WINDOWS, SENSITIVITY_TOKENS = 2, 256  # section 8 ranks layers on 2 × 256 evaluation tokens
MIXED_BITS = 3.5  # section 8's second budget: about 3.5 bits per weight
MAX_KL = 0.15  # self-check Q3's quality bar, in nats per token (about W4 GPTQ's KL here)
TOP_LAYERS = 12


@dataclass(frozen=True)
class Sensitivity:
    """Section 8's measurements: KL to the float model on `ids` with one kind of layer (`by_kind`) or one layer
    (`by_layer`) quantized, by bits (3, 4) then name; `kl` by layer name then bits (W8 per row taken as lossless,
    0.0), as 5.11's plan_precision takes it."""

    ids: torch.Tensor
    shapes: dict[str, tuple[int, int]]
    kinds: dict[str, list[str]]
    by_kind: dict[int, dict[str, float]]
    by_layer: dict[int, dict[str, float]]
    kl: dict[str, dict[int, float]]
    seconds: float


def measure_sensitivity(ctx: Context, m: ModuleType) -> Sensitivity:
    """KL per kind and per layer at W3 and W4 g64 by the target's 5.11, on SENSITIVITY_WINDOWS × SENSITIVITY_TOKENS
    evaluation tokens."""
    model = ctx.fresh_model()
    ids = ctx.eval_ids[:SENSITIVITY_WINDOWS, :SENSITIVITY_TOKENS]
    baseline = log_probs(model, ids)
    shapes = m.linear_shapes(model)
    started = time.perf_counter()
    kinds = {kind: [name for name in shapes if name.endswith(kind)] for kind in m.KINDS}
    by_kind = {bits: m.sensitivity(model, ids, baseline, kinds, bits, GROUP_SIZE) for bits in (3, 4)}
    by_layer = {}
    for bits in (3, 4):
        by_layer[bits] = m.sensitivity(model, ids, baseline, {name: [name] for name in shapes}, bits, GROUP_SIZE,
                                       lambda message: say(f"{message} ({time.perf_counter() - started:.0f} s)"))
    kl = {name: {**{bits: by_layer[bits][name] for bits in (3, 4)}, 8: 0.0} for name in shapes}
    return Sensitivity(ids, shapes, kinds, by_kind, by_layer, kl, time.perf_counter() - started)


def uniform_plan(shapes: dict[str, tuple[int, int]], bits: int) -> dict[str, tuple]:
    """Every layer at W`bits` g64."""
    return dict.fromkeys(shapes, (bits, GROUP_SIZE))


def plans_to_compare(shapes: dict[str, tuple[int, int]], budget: float, plan_a: dict, plan_b: dict) -> dict[str, dict]:
    """The plans section 8 measures, by label: uniform W4 g64 / g128 / W3 g64, and the mixed plans at W4 g64's
    bytes (`plan_a`, `budget` bits) and at MIXED_BITS (`plan_b`), each by RTN and by GPTQ + act-order."""
    a, b = f"mixed at {budget:.3f} bits (W4 g{GROUP_SIZE}'s bytes)", f"mixed at {MIXED_BITS} bits"
    g128 = {name: (4, max(g for g in range(32, 129, 32) if shapes[name][1] % g == 0)) for name in shapes}
    return {f"uniform W4 g{GROUP_SIZE} RTN": uniform_plan(shapes, 4), a: plan_a, f"{a}, GPTQ + act-order": plan_a,
            "uniform W4 g128 RTN (g96 where 128 does not divide)": g128, b: plan_b,
            f"{b}, GPTQ + act-order": plan_b, f"uniform W3 g{GROUP_SIZE} RTN": uniform_plan(shapes, 3)}


def measure_plans(ctx: Context, m: ModuleType, sens: Sensitivity, plans: dict[str, dict]) -> tuple[list, dict]:
    """Each plan on a fresh model (5.11's quantize_layers, or GPTQ + act-order where the label says so), measured
    on the whole evaluation windows: the table's rows, and each plan's evaluate() result by label."""
    gptq_layer = ctx.module("ex5_6_gptq").gptq_quantize_layer
    rows, measured = [], {}
    for label, plan in plans.items():
        quantized = ctx.fresh_model()
        if label.endswith("GPTQ + act-order"):
            with block_progress(quantized, label):
                gptq_with_plan(gptq_layer, quantized, ctx.calib_ids, plan)
        else:
            m.quantize_layers(quantized, plan)
        result = measured[label] = evaluate(quantized, ctx.eval_ids, ctx.baseline)
        ctx.points.append({"format": label, "bits_per_weight": m.plan_bits(plan, sens.shapes), "kl": result["kl"],
                           "tokens_per_s": None, "section": 8})
        rows.append(plan_row(m, sens, label, plan, result))
        say(f"{label}: KL {result['kl']:.4f}, perplexity {result['ppl']:.2f}")
    return rows, measured


def plan_row(m: ModuleType, sens: Sensitivity, label: str, plan: dict, result: dict) -> tuple[str, ...]:
    """A plan's row: bits per weight, bytes (formula), the KL its layers predict (Σ of their KLs, for plans of g64
    and per-row layers only), the measured KL and perplexity, how many layers at each width."""
    counts = ", ".join(f"{sum(1 for f in plan.values() if f[0] == bits)} × W{bits}" for bits in (3, 4, 8)
                       if any(f[0] == bits for f in plan.values()))
    predicted = sum(sens.kl[name][fmt[0]] for name, fmt in plan.items()) if all(
        fmt[1] in (GROUP_SIZE, None) for fmt in plan.values()) else None
    return (label, f"{m.plan_bits(plan, sens.shapes):.3f}",
            f"{sum(m.layer_bytes(*sens.shapes[n], *f) for n, f in plan.items()):,}",
            "—" if predicted is None else f"{predicted:.4f}", f"{result['kl']:.4f}", f"{result['ppl']:.2f}", counts)


def kind_rows(sens: Sensitivity) -> list[tuple[str, ...]]:
    """Per kind: KL at W3 and W4, their ratio, and the sum of its layers' W3 KLs."""
    by_kind, by_layer = sens.by_kind, sens.by_layer
    return [(kind, *(f"{by_kind[bits][kind]:.4f}" for bits in (3, 4)), f"{by_kind[3][kind] / by_kind[4][kind]:.1f}×",
             f"{sum(by_layer[3][n] for n in names):.4f}") for kind, names in sens.kinds.items()]


def layer_rows(sens: Sensitivity, plan_a: dict, plan_b: dict) -> list[tuple[str, ...]]:
    """The TOP_LAYERS layers with the largest W3 KL, and what each mixed plan gives them."""
    top = sorted(sens.shapes, key=lambda n: -sens.by_layer[3][n])[:TOP_LAYERS]
    return [(name, f"{sens.by_layer[3][name]:.4f}", f"{sens.by_layer[4][name]:.4f}",
             f"W{plan_a[name][0]} ({sens.kl[name][plan_a[name][0]]:.4f})",
             f"W{plan_b[name][0]} ({sens.kl[name][plan_b[name][0]]:.4f})") for name in top]


def self_check_q3(m: ModuleType, sens: Sensitivity, calibrated: dict[str, dict], measured: dict[str, dict],
                  budget: float) -> list[tuple[str, ...]]:
    """Self-check Q3 at three budgets, decided by 5.11's choose_scheme from the best PTQ KL at that width (section
    6's `calibrated` results where they ran, else this section's uniform RTN) and the layer sensitivities."""
    ptq = {bits: min((r["kl"] for label, r in calibrated.items() if label.startswith(f"W{bits} ")),
                     default=measured[f"uniform W{bits} g{GROUP_SIZE} RTN"]["kl"]) for bits in (4, 3)}
    questions = ((4, budget), (3, m.plan_bits(uniform_plan(sens.shapes, 3), sens.shapes)), (3, MIXED_BITS))
    return [(f"W{bits}, budget {budget_bits:.3f} bits", f"{ptq[bits]:.4f}",
             *m.choose_scheme(ptq[bits], MAX_KL, sens.by_layer[bits], bits, budget_bits))
            for bits, budget_bits in questions]


def sensitivity_note(ctx: Context, sens: Sensitivity) -> str:
    """How the sensitivities were measured, how concentrated they are, and how the plans count bytes."""
    ranked = sorted(sens.by_layer[3].values(), reverse=True)
    share = sum(ranked[: round(0.1 * len(ranked))]) / sum(ranked)
    return (f"\n\nSensitivity: KL to the float model on {sens.ids.shape[0]} × {sens.ids.shape[1]} evaluation "
            f"tokens, {2 * len(sens.shapes) + 2 * len(sens.kinds)} runs in {sens.seconds:.0f} s (each starts at the "
            f"first block it changes). The top 10 % of layers hold {share:.0%} of the summed W3 layer KL. Plans: "
            f"greedy on these KLs (W8 per row taken as lossless), options W3 g{GROUP_SIZE}, W4 g{GROUP_SIZE}, W8 per "
            f"row; bytes = codes + fp16 scale (+ uint8 zero point below 8 bits) per group, as 5.3 stores them "
            f"(3-bit codes counted at 3 bits). Baseline perplexity {perplexity(ctx.eval_ids, ctx.baseline):.2f}.")


def sensitivity_table(ctx: Context, calibrated: dict[str, dict]) -> str:
    """Which layers can take fewer bits (5.11): KL per kind and per layer at W3 / W4 g64, mixed-precision plans
    against uniform formats at equal bytes, and self-check Q3 decided from these numbers (the best PTQ KL from
    section 6's `calibrated` results where it ran, else RTN's)."""
    m = ctx.module("ex5_11_sensitivity")
    sens = measure_sensitivity(ctx, m)
    budget = m.plan_bits(uniform_plan(sens.shapes, 4), sens.shapes)
    plan_a, plan_b = m.plan_precision(sens.kl, sens.shapes, budget), m.plan_precision(sens.kl, sens.shapes, MIXED_BITS)
    rows, measured = measure_plans(ctx, m, sens, plans_to_compare(sens.shapes, budget, plan_a, plan_b))
    full_ids = ctx.eval_ids
    return (
        "**每类层 / per kind** (all 30 layers of a kind quantized together, nothing else):\n\n"
        + markdown_table(("kind", *(f"KL W{b} g{GROUP_SIZE}" for b in (3, 4)), "W3 / W4",
                          "Σ of its layers' W3 KL"), kind_rows(sens))
        + f"\n\n**最敏感的层 / the {TOP_LAYERS} most sensitive layers** (one layer quantized, nothing else; "
          f"in brackets the KL the plan predicts for it):\n\n"
        + markdown_table(("layer", "KL W3", "KL W4", "plan at W4's bytes", f"plan at {MIXED_BITS} bits"),
                         layer_rows(sens, plan_a, plan_b))
        + f"\n\n**混合精度 vs 统一格式 / mixed precision against uniform formats** (RTN unless the row says "
          f"GPTQ; measured on the {full_ids.shape[0]} × {full_ids.shape[1]} evaluation windows; section 6 has "
          f"uniform GPTQ + act-order):\n\n"
        + markdown_table(("plan", "bits/weight", "linear bytes (formula)", "predicted KL (Σ layers)",
                          "measured KL", "perplexity", "layers"), rows)
        + "\n\n**自测题 3 / self-check Q3** (choose_scheme on these measurements; best PTQ KL from section 6, "
          f"quality bar KL ≤ {MAX_KL}):\n\n"
        + markdown_table(("question", "best PTQ KL", "scheme", "reason"),
                         self_check_q3(m, sens, calibrated, measured, budget))
        + sensitivity_note(ctx, sens))


@torch.no_grad()
def gptq_with_plan(gptq_layer: Callable, model: Llama, calib_ids: torch.Tensor, plan: dict[str, tuple]) -> None:
    """GPTQ + act-order with each linear at its plan's (bits, group_size): the target's 5.6 gptq_quantize_layer
    in kata/sequential.py's loop; linears that share an input and a format are quantized stacked.
    Not 5.6's gptq_quantize_model: its graded signature takes one format for every layer, a plan one per layer."""

    cos, sin = rope(model, calib_ids.shape[1])
    x = first_block_input(model, calib_ids)
    for index, block in enumerate(model.layers):
        inputs = block_linear_inputs(block, x, cos, sin)
        for key, names in INPUT_GROUPS.items():
            H = (2 / inputs[key].shape[0]) * gram(inputs[key])
            by_format: dict[tuple, list[str]] = {}
            for name in names:
                by_format.setdefault(plan[f"layers.{index}.{name}"], []).append(name)
            for (num_bits, group_size), same in by_format.items():
                layers = linears(block, same)
                Q = gptq_layer(torch.cat([layer.weight for layer in layers]), H.clone(), num_bits, group_size,
                               symmetric=num_bits == 8, act_order=True)
                for layer, rows in zip(layers, Q.split([layer.out_features for layer in layers]), strict=True):
                    layer.weight.copy_(rows)
        x = run_block(block, x, cos, sin)
