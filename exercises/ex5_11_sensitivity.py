"""3.2 · 4.1 问题 3 — 哪些层能少给比特：层敏感度、混合精度、PTQ / 混合精度 / QAT 的判断 / sensitivity, mixed precision.

只量化一个线性层（或一类线性层：q/k/v/o/gate/up/down），其余不动；模型下一个 token 分布相对浮点模型的 KL
就是这一层的敏感度。单层的噪声很小，几层一起量化时 KL 近似相加：方案的 KL 用各层 KL 之和来预测。
Quantize one linear (or one kind) and nothing else: the KL to the float model is its sensitivity; KLs roughly add.

layer_bytes(out_features, in_features, num_bits, group_size): 5.3 实际存的字节 / what 5.3 stores:
    码 ⌈out·in·bits / 8⌉ 字节 + 每组一个 fp16 scale，8 比特以下再加一个 uint8 零点（8 比特逐行对称，没有零点）；
    group_size=None：每个输出行一组 / one group per row. group_size 不整除 in_features → ValueError.
linear_shapes(model): 每个块内线性层（名字以 _proj 结尾）→ (out_features, in_features)，按模型顺序。
plan_bits(plan, shapes): 方案的平均每权重比特 = 8 · Σ 字节 / Σ 权重数 / average bits per weight of a plan.
quantize_layers(model, plan): 只对 plan 里的层就地做 RTN（kata.oracles.rtn）：8 比特以下非对称分组，8 比特逐行
    对称（symmetric=True）/ round-to-nearest in place, only the layers in plan.
sensitivity(model, ids, baseline, groups, num_bits=3, group_size=64, progress=None): 对每个组（标签 → 一起量化的层名），
    只量化这些层，算 kata.evaluate.evaluate(model, ids, baseline)["kl"]，再把权重恢复原样；返回 {标签: KL}。
    每 30 组和最后一组调用 progress(一行文字，含计数 i/n，如 "30/31") / progress every 30 groups and at the end.
plan_precision(kl, shapes, budget_bits, options=OPTIONS): kl[层][比特] 是实测敏感度。贪心：所有层先取最便宜的
    options[0]；只要还有升级放得进预算，就选“每多花一个字节 KL 降得最多”的那个升级（可升到任何更宽的选项，
    KL 必须真的下降；并列时取 kl 里排在前面的层）。平均比特 ≤ budget_bits。返回 {层: (bits, group_size)}。
    greedy: all at options[0]; keep taking the upgrade with the largest KL drop per extra byte that fits the budget.
choose_scheme(ptq_kl, max_kl, layer_kl, target_bits, budget_bits, top_share=0.1, concentrated=0.5) → (方案, 理由):
    "PTQ"：目标位宽下最好的 PTQ 的 KL ≤ max_kl；否则 "wider format"：预算够每个权重多给 1 比特
    （budget_bits ≥ target_bits + 1）；否则 "mixed precision"：最敏感的 top_share 比例的层占了层 KL 总和的
    ≥ concentrated（top = max(1, round(top_share · 层数)) 层）；否则 "QAT"。理由是一句人能读的话，写出用到的数字
    （KL 四位小数如 0.1197，占比取整百分数如 42%）/ the reason quotes the numbers. "wider format" 的理由含
    "{target_bits + 1} bits everywhere"（如 "4 bits everywhere"）；"mixed precision" 的理由含
    "{top} most sensitive of {层数}"（如 "1 most sensitive of 5"）。

坏输入 / bad input: budget_bits 低于最便宜的方案或高于 16 → ValueError（消息含 "budget_bits"）；groups 或 kl 里
    有模型没有的层名 → ValueError（消息含参数名）；kl 缺少某个选项的位宽 → ValueError；num_bits 不在 2..8 →
    ValueError；ptq_kl 为负（0 可以：无损）、max_kl 或 budget_bits 不是正数、layer_kl 为空或有负值、target_bits 不在
    2..8 → ValueError（消息含参数名）。错误信息写明参数名 / every message names the argument.

答案规则 / answer rules: python -m kata rules ex5_11
提示 / hints: python -m kata hint ex5_11
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from kata.llama import Llama

KINDS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
         "mlp.up_proj", "mlp.down_proj")
Format = tuple[int, int | None]  # (bits, group_size)；None：每行一组 / one group per output row
OPTIONS: tuple[Format, ...] = ((3, 64), (4, 64), (8, None))
SCHEMES = ("PTQ", "wider format", "mixed precision", "QAT")


def layer_bytes(out_features: int, in_features: int, num_bits: int, group_size: int | None) -> int:
    """一个量化线性层的字节数 / bytes of one quantized linear."""
    raise NotImplementedError("5.11: layer_bytes — 提示 / hint: python -m kata hint ex5_11")


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """层名 → (out, in) / block linear name → (out_features, in_features)."""
    raise NotImplementedError("5.11: linear_shapes — 提示 / hint: python -m kata hint ex5_11")


def plan_bits(plan: Mapping[str, Format], shapes: Mapping[str, tuple[int, int]]) -> float:
    """平均每权重比特 / average bits per weight."""
    raise NotImplementedError("5.11: plan_bits — 提示 / hint: python -m kata hint ex5_11")


def quantize_layers(model: nn.Module, plan: Mapping[str, Format]) -> None:
    """只量化 plan 里的层 / RTN only the layers in plan, in place."""
    raise NotImplementedError("5.11: quantize_layers — 提示 / hint: python -m kata hint ex5_11")


def sensitivity(model: Llama, ids: torch.Tensor, baseline: list[torch.Tensor],
                groups: Mapping[str, Sequence[str]], num_bits: int = 3, group_size: int | None = 64,
                progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """每组只量化它的层时的 KL / the KL with only each group's layers quantized."""
    raise NotImplementedError("5.11: sensitivity — 提示 / hint: python -m kata hint ex5_11")


def plan_precision(kl: Mapping[str, Mapping[int, float]], shapes: Mapping[str, tuple[int, int]],
                   budget_bits: float, options: Sequence[Format] = OPTIONS) -> dict[str, Format]:
    """预算内的贪心混合精度方案 / a greedy mixed-precision plan within the budget."""
    raise NotImplementedError("5.11: plan_precision — 提示 / hint: python -m kata hint ex5_11")


def choose_scheme(ptq_kl: float, max_kl: float, layer_kl: Mapping[str, float], target_bits: int,
                  budget_bits: float, top_share: float = 0.1, concentrated: float = 0.5) -> tuple[str, str]:
    """PTQ / wider format / mixed precision / QAT，附理由 / with the reason."""
    raise NotImplementedError("5.11: choose_scheme — 提示 / hint: python -m kata hint ex5_11")
