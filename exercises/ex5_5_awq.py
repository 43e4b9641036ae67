"""实践 (b) — AWQ：按激活挑选重要通道的缩放、截断搜索、折叠 / AWQ: activation-aware scales, clipping, folding.

Lin et al. 2023. 激活大的输入通道最重要：把这些通道的权重放大 s 倍再量化（相对舍入误差变小），再把 s 从输入
里除回去 / Inputs with large activations matter most: scale their weight columns up by s before quantizing
and divide s back out of the input:
    y = x·Wᵀ = (x / s)·(W·diag(s))ᵀ ≈ (x / s)·Q(W·diag(s))ᵀ
    awq_scales:       s = mean|x|^α（mean|x| 至少 1e-4）, 再归一化 / then s ← s / sqrt(max(s)·min(s))
                      例 / e.g. mean|x| = [1, 4], α = 1 → s = [0.5, 2.0];  α = 0 → s = 1（即 RTN / plain RTN）
    search_awq_scale: α ∈ {0, 1/grid, …, (grid−1)/grid}，选使共享输入 x (N, in) 的各层输出误差之和最小者 /
                      pick α minimising, summed over the linears sharing x, the output error
                      mean_n ‖x_n·Wᵀ − (x_n/s)·Q(W·s)ᵀ‖²（每层再除以输出维数 / per linear, divided
                      by its output width）, Q = kata.oracles.rtn(W·s, num_bits, group_size, symmetric=...)
                      （或你自己 5.1 的 fake_quantize / or your own 5.1 fake_quantize）. 返回 / returns (α, s).
                      ⚠ 常见错误：只放大了权重却没把 s 从输入除回去 / the classic bug: scaling W but not x.
    search_clip:      每个 (行, 组) 在 c ∈ {1, 1 − 1/grid, …, 1 − max_shrink} 中选出使该组输出误差
                      mean_n (x_{n,g}·(w_g − ŵ_g(c))ᵀ)² 最小的 c（ŵ 用 5.1 的 clip_ratio=c）/ per (row, group),
                      the c minimising that group's output error; returns c (out, in / group_size).
                      ŵ(c) = kata.oracles.rtn(w, num_bits, group_size, symmetric=..., clip_ratio=c) 可直接用.
    fold_scales:      把 s 折进前一层 / fold s into the previous module so the float model is unchanged:
                      RMSNorm → weight /= s;  nn.Linear → 输出行 / output rows: weight /= s[:, None]
                      (有偏置则 bias /= s);  后面每个 Linear / each following Linear: weight *= s (列 / columns).
                      其他类型 → TypeError（写明 previous）/ anything else → TypeError naming `previous`.
    awq_quantize_model: 逐块 / block by block — kata/sequential.py 开头有完整的例子 / its docstring shows the loop:
                      x = first_block_input(model, ids); for block in model.layers:
                      inputs = block_linear_inputs(block, x, cos, sin)（默认 bf16 autocast / bf16 by default）;
                      …; x = run_block(block, x, cos, sin).
                      q/k/v 的 s 折进 input_layernorm，gate/up 折进 post_attention_layernorm，down 折进 up_proj；
                      o_proj 不缩放（9 个 query 头共享 3 个 value 头，无法精确折进 v_proj），只做截断；
                      然后每层按截断比例量化到网格（权重仍是浮点）；下一块的输入用本块量化后的输出。
                      Scales fold into the norms and up_proj; o_proj is only clipped (GQA); every linear is then
                      rounded to its grid in place; the next block sees this block's quantized output.
                      搜索只看约 max_tokens 个 token：n 段长 T 的窗口中取 count = max(1, min(n, max_tokens // T))
                      段，torch.linspace(0, n − 1, count).long() / searches see about max_tokens tokens:
                      whole windows, count of the n, spread evenly with torch.linspace(0, n − 1, count).long().
                      round_weights=False：只折叠缩放、不截断不取整（浮点模型输出不变，可接着跑 GPTQ）/
                      only fold the scales (the float model is unchanged; e.g. run GPTQ next).
                      返回 / returns {"seconds": ..., "mean_ratio": ...}.

坏输入 / bad input: fold_scales 的 previous 不是 RMSNorm / nn.Linear → TypeError（消息含收到的类型名，如 "ReLU"）.
错误信息写明参数名 / every message names the argument.

答案规则 / answer rules: python -m kata rules ex5_5
提示 / hints: python -m kata hint ex5_5
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kata.llama import Llama


def awq_scales(act_mean_abs: torch.Tensor, ratio: float) -> torch.Tensor:
    """(in,) → (in,)."""
    raise NotImplementedError("5.5: awq_scales — 提示 / hint: python -m kata hint ex5_5")


def search_awq_scale(weights: Sequence[torch.Tensor], x: torch.Tensor, num_bits: int = 4, group_size: int = 64, *,
                     symmetric: bool = False, grid: int = 20) -> tuple[float, torch.Tensor]:
    """返回 / Returns (α, s)."""
    raise NotImplementedError("5.5: search_awq_scale — 提示 / hint: python -m kata hint ex5_5")


def search_clip(w: torch.Tensor, x: torch.Tensor, num_bits: int = 4, group_size: int = 64, *,
                symmetric: bool = False, grid: int = 20, max_shrink: float = 0.5) -> torch.Tensor:
    """返回 / Returns c (out, in / group_size)."""
    raise NotImplementedError("5.5: search_clip — 提示 / hint: python -m kata hint ex5_5")


def fold_scales(previous: nn.Module, following: Sequence[nn.Linear], s: torch.Tensor) -> None:
    """就地修改 / In place."""
    raise NotImplementedError("5.5: fold_scales — 提示 / hint: python -m kata hint ex5_5")


def awq_quantize_model(model: Llama, calib_ids: torch.Tensor, num_bits: int = 4, group_size: int = 64, *,
                       symmetric: bool = False, grid: int = 20, clip: bool = True,
                       max_tokens: int = 4096, round_weights: bool = True) -> dict[str, float]:
    """就地量化整个模型 / Quantize the model in place (see above)."""
    raise NotImplementedError("5.5: awq_quantize_model — 提示 / hint: python -m kata hint ex5_5")
