"""1.2 — 7B 模型格式对比表 / The 7B comparison table across formats.

把 1.1 的显存公式变成一张表：每个格式一行，写出显存和相对 fp16 的倍数。
显存函数作为参数传入（测试会给你一个），所以这个练习不依赖你在 1.1 的答案。

Turn 1.1's formula into a table: one row per format with its memory and its ratio to fp16. The memory
function is passed in (the tests give you one), so this exercise does not depend on your 1.1 answer.

例 / e.g. num_params_b=7, formats=["fp16", "int4"] →
    [{"format": "fp16", "memory_gb": 14.0, "vs_fp16": 1.0},
     {"format": "int4", "memory_gb": 3.5,  "vs_fp16": 0.25}]
渲染 / rendered:
    | format | memory (GB) | vs fp16 |
    | --- | ---: | ---: |
    | fp16 | 14.00 | 1.00× |
    | int4 | 3.50 | 0.25× |

坏输入 / bad input: formats 为空 → ValueError; num_params_b ≤ 0 → ValueError.
错误信息写明参数名 / every message names the argument.

答案规则 / answer rules (python -m kata rules ex1_2):
    不能用 / may not use: kata.report
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex1_2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def build_format_table(num_params_b: float, formats: Sequence[str],
                       memory_gb: Callable[[float, str], float]) -> list[dict]:
    """每个格式一行 / One row per format: keys "format", "memory_gb", "vs_fp16" (= memory / fp16 memory).

    num_params_b 必须为正、formats 不能为空，否则 ValueError / a non-positive num_params_b or empty formats
    raises ValueError naming the argument.
    """
    raise NotImplementedError("1.2: build_format_table — 提示 / hint: python -m kata hint ex1_2")


def render_format_table(rows: Sequence[dict]) -> str:
    """渲染成 Markdown 表（见模块说明）/ Render the rows as the Markdown table shown above."""
    raise NotImplementedError("1.2: render_format_table — 提示 / hint: python -m kata hint ex1_2")
