"""The lab: the chapter's tables computed by a target's own code, printed and written to a file.

实验：用所选目标（默认 reference）的代码把显存、误差和节省真正算出来，打印并写入文件。

    python -m kata.lab                      # reference, writes lab-report.md
    python -m kata.lab --target exercises   # your own code; unfinished exercises are marked so
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from kata import target as targets
from kata.report import markdown_table

FORMATS_7B = ("fp32", "fp16", "bf16", "fp8", "int8", "int4", "int4-g128")


def _module(name: str):
    return importlib.import_module(f"exercises.{name}")


def sample_weight() -> tuple[str, torch.Tensor]:
    """The weight the error tables measure: a 4096×4096 Gaussian with std 0.02 (Llama's init), seed 0."""
    weight = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0)) * 0.02
    return "Gaussian 4096×4096, std 0.02, seed 0", weight


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


def build_report(target: str) -> str:
    targets.install(target)
    source, weight = sample_weight()
    started = time.perf_counter()
    sections = [
        f"# quant-kata lab report — target `{target}`\n\n"
        f"torch {torch.__version__}; 误差表测量的权重 / weight measured by the error tables: {source}.\n",
        _section("1. 7B 模型各格式权重显存 / 7B weight memory by format", table_memory),
        _section("2. 8 比特 vs 4 比特误差（逐张量对称）/ 8-bit vs 4-bit error (per-tensor symmetric)",
                 lambda: table_error(weight)),
        _section("3. 显存节省 vs 误差 / memory saving next to error", lambda: table_savings(weight)),
    ]
    sections.append(f"_用时 / took {time.perf_counter() - started:.1f} s_\n")
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.lab", description="quant-kata 实验 / lab report")
    parser.add_argument("--target", choices=targets.TARGETS, default="reference")
    parser.add_argument("--out", type=Path, default=Path("lab-report.md"))
    args = parser.parse_args(argv)
    report = build_report(args.target)
    print(report)
    args.out.write_text(report, encoding="utf-8")
    print(f"写入 / wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
