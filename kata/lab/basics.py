"""Lab sections 1–5: the chapter's own tables (memory, error, savings), 4.1's activations, measured bytes.

第 1–5 节：7B 显存表、8/4 比特误差、显存节省与误差、激活比权重难量化（真实激活）、预测比特与实测字节。
"""

from __future__ import annotations

import copy

import torch

from kata.lab.context import Context
from kata.llama import Llama, weight_bytes
from kata.report import markdown_table

FORMATS_7B = ("fp32", "fp16", "bf16", "fp8", "int8", "int4", "int4-g128")
ERROR_WEIGHT = "layers.0.mlp.down_proj"  # the real weight the error tables measure


def memory_table(ctx: Context) -> str:
    """7B weight memory by format (1.1 + 1.2)."""
    memory = ctx.module("ex1_1_weight_memory").calculate_weight_memory
    table = ctx.module("ex1_2_format_table")

    def memory_gb(num_params_b: float, fmt: str) -> float:
        if fmt == "int4-g128":  # one fp16 scale per 128 weights
            return memory(num_params_b, "int4", group_size=128)
        return memory(num_params_b, fmt)

    return table.render_format_table(table.build_format_table(7, FORMATS_7B, memory_gb))


def error_table(ctx: Context, weight: torch.Tensor) -> str:
    """Per-tensor round-trip error at 8 and 4 bits (2.1 + 2.2)."""
    per_tensor = ctx.module("ex2_1_per_tensor")
    errors = ctx.module("ex2_2_quant_error").compare_bit_widths(
        weight, per_tensor.quantize_per_tensor, per_tensor.dequantize_per_tensor, bit_widths=(8, 4))
    rows = [(f"int{bits}", f"{e['mse']:.3e}", f"{e['max_abs']:.4f}", f"{e['sqnr_db']:.2f}")
            for bits, e in errors.items()]
    return markdown_table(("format", "MSE", "max abs error", "SQNR (dB)"), rows)


def savings_table(ctx: Context, weight: torch.Tensor) -> str:
    """Memory saving next to measured error (2.1 + 2.2 + 3.1)."""
    per_tensor = ctx.module("ex2_1_per_tensor")
    rows = ctx.module("ex3_1_savings_vs_error").savings_vs_error(
        weight, per_tensor.quantize_per_tensor, per_tensor.dequantize_per_tensor,
        ctx.module("ex2_2_quant_error").quantization_error, bit_widths=(8, 4))
    return markdown_table(("format", "bits", "memory saving", "MSE", "SQNR (dB)"),
                          [(r["format"], r["bits"], f"{r['memory_saving']:.0%}", f"{r['mse']:.3e}",
                            f"{r['sqnr_db']:.2f}") for r in rows])


def activation_table(ctx: Context, model: Llama) -> str:
    """4.1 Q2 on the real model: down_proj input activations against the weight (4.1 + 2.1 + 2.2)."""
    from kata.sequential import block_linear_inputs, first_block_input, rope, run_block

    per_tensor = ctx.module("ex2_1_per_tensor")
    error = ctx.module("ex2_2_quant_error").quantization_error

    def sqnr(x: torch.Tensor) -> float:
        return error(x, per_tensor.dequantize_per_tensor(*per_tensor.quantize_per_tensor(x, 8)))["sqnr_db"]

    ids = ctx.calib_ids[:2]  # the first 2 calibration windows
    cos, sin = rope(model, ids.shape[1])
    x = first_block_input(model, ids)
    rows = []
    for index, block in enumerate(model.layers):
        if index in (0, 10, 20, len(model.layers) - 1):
            act = block_linear_inputs(block, x, cos, sin, names=["mlp.down_proj"], dtype=None)["mlp.down_proj"]
            weight = block.mlp.down_proj.weight.detach()
            got = ctx.module("ex4_1_self_check").activation_vs_weight(weight, act, sqnr)
            rows.append((f"layers.{index}.mlp.down_proj", f"{got['weight_crest']:.1f}",
                         f"{got['activation_crest']:.1f}", f"{got['weight_sqnr_db']:.1f}",
                         f"{got['activation_sqnr_db']:.1f}", "是 yes" if got["activation_harder"] else "否 no"))
        x = run_block(block, x, cos, sin, dtype=None)
    return markdown_table(("layer", "weight crest", "activation crest", "weight int8 SQNR (dB)",
                           "activation int8 SQNR (dB)", "activations harder"), rows)


def measured_memory_table(ctx: Context, model: Llama) -> str:
    """Predicted bits per weight (1.1) against the real bytes of QuantLinear layers (5.3), every linear."""
    bits_per_weight = ctx.module("ex1_1_weight_memory").bits_per_weight
    quantize_model = ctx.module("ex5_3_quant_linear").quantize_model
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
