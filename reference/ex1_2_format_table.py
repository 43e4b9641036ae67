"""1.2 — the 7B comparison table across formats (solution). 7B 模型格式对比表（参考答案）。"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kata.validate import check_positive


def build_format_table(num_params_b: float, formats: Sequence[str],
                       memory_gb: Callable[[float, str], float]) -> list[dict]:
    """One row per format: memory_gb(num_params_b, fmt) and its ratio to fp16's memory."""
    check_positive(num_params_b, "num_params_b")
    if not formats:
        raise ValueError("formats 不能为空 / formats must not be empty")
    fp16 = memory_gb(num_params_b, "fp16")
    rows = []
    for fmt in formats:
        gb = memory_gb(num_params_b, fmt)
        rows.append({"format": fmt, "memory_gb": gb, "vs_fp16": gb / fp16})
    return rows


def render_format_table(rows: Sequence[dict]) -> str:
    """A Markdown table: | format | memory (GB) | vs fp16 |, numbers with two decimals."""
    lines = ["| format | memory (GB) | vs fp16 |", "| --- | ---: | ---: |"]
    lines += [f"| {r['format']} | {r['memory_gb']:.2f} | {r['vs_fp16']:.2f}× |" for r in rows]
    return "\n".join(lines)
