"""3.1 · TODO 3 — 显存节省与误差放在一张表里 / Memory saving next to measured error, one table.

每个格式一行：省了多少显存（相对 fp16），付出了多少误差。
One row per format: how much memory it saves against fp16, and what error it costs.
    memory_saving = 1 - bits / 16          fp16 → 0.0, int8 → 0.5, int4 → 0.75
    fp16 这一行也要实测 / the fp16 row is measured too: x̂ = x.to(torch.float16).to(x.dtype)
    int{b} 行 / rows: x̂ = dequantize(*quantize(x, b))
    误差 / error: error(x, x̂) → {"mse": ..., "sqnr_db": ...}
quantize、dequantize、error 都作为参数传入（形如 2.1 与 2.2 的函数）/ are passed in, shaped like 2.1 and 2.2.

例 / e.g. bit_widths=(8, 4) → rows in this order:
    {"format": "fp16", "bits": 16, "memory_saving": 0.0,  "mse": ..., "sqnr_db": ...}
    {"format": "int8", "bits": 8,  "memory_saving": 0.5,  ...}
    {"format": "int4", "bits": 4,  "memory_saving": 0.75, ...}
坏输入 / bad input: x 为空/非浮点/含 NaN → ValueError/TypeError; bit_widths 超出 2..8 → ValueError.

答案规则 / answer rules (python -m kata rules ex3_1):
    不能用 / may not use: kata.oracles
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex3_1
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def savings_vs_error(x: torch.Tensor, quantize: Callable, dequantize: Callable, error: Callable,
                     bit_widths: Sequence[int] = (8, 4)) -> list[dict]:
    """返回 fp16 行加每个位宽一行 / Returns the fp16 row, then one row per bit width (see above)."""
    raise NotImplementedError("TODO 3: savings_vs_error — 提示 / hint: python -m kata hint ex3_1")
