"""实践 (b) — 校准：捕获层输入、通道统计、Hessian / Calibration: layer inputs, channel stats, the Hessian.

GPTQ 和 AWQ 都要先看一看每个线性层“实际吃进去”的激活 / both look at what each Linear really receives:
    capture_inputs: 在指定模块上注册 forward pre-hook（register_forward_pre_hook），按 batch_size 分批运行
        ids (B, T)，把每个模块的输入展平成 (B·T, in)、转 float32 收集；结束（或出错）时一定要移除 hook。
        Register forward pre-hooks on the named modules, run ids (B, T) in batches, collect each input
        flattened to (B·T, in) as float32, and always remove the hooks (try / finally).
        names 里有不存在的模块 → ValueError（写明 names）/ an unknown name → ValueError naming `names`.
    channel_stats: 每个输入通道（最后一维）在所有 token 上的 mean |x|、max |x|、RMS /
        per input channel over all tokens → {"mean_abs", "max_abs", "rms"}, each (channels,).
    hessian:  H = (2/N) Σ_n x_n x_nᵀ = (2/N) XᵀX，X 为 (N, d)，用 float64 / in float64
        （GPTQ 的层误差 ‖XWᵀ - XŴᵀ‖² 对 W 每一行的二阶导 / the curvature GPTQ uses）
    HessianAccumulator: 一批一批地累积同一个 H，不保存全部 X / the same H, batch by batch:
        H ← H · n/(n+m) + (2/(n+m)) · X_bᵀX_b,   n ← n + m
例 / e.g. X = [[1, 0], [1, 2]] → H = (2/2)·[[2, 2], [2, 4]] = [[2, 2], [2, 4]].

坏输入 / bad input: names 里有不存在的模块 → ValueError; channel_stats 的 x 为空 → ValueError; forward 自己出错
（如 token id 越界 → torch 的 IndexError）时错误照常抛出，但 hook 先摘掉.
错误信息写明参数名 / every message names the argument.

答案规则 / answer rules (python -m kata rules ex5_4):
    不能用 / may not use: kata.sequential
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex5_4
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def capture_inputs(model: nn.Module, names: Sequence[str], ids: torch.Tensor,
                   batch_size: int = 8) -> dict[str, torch.Tensor]:
    """返回 / Returns {name: (B·T, in) float32}."""
    raise NotImplementedError("5.4: capture_inputs — 提示 / hint: python -m kata hint ex5_4")


def channel_stats(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """返回 / Returns {"mean_abs", "max_abs", "rms"}; x 至少二维且非空，否则 ValueError / else ValueError."""
    raise NotImplementedError("5.4: channel_stats — 提示 / hint: python -m kata hint ex5_4")


def hessian(x: torch.Tensor) -> torch.Tensor:
    """(2/N) XᵀX, float64, (d, d)."""
    raise NotImplementedError("5.4: hessian — 提示 / hint: python -m kata hint ex5_4")


class HessianAccumulator:
    def __init__(self, dim: int) -> None:
        raise NotImplementedError("5.4: HessianAccumulator — 提示 / hint: python -m kata hint ex5_4")

    def add(self, x: torch.Tensor) -> None:
        """加入一批 (m, dim) 或 (..., dim) / add a batch."""
        raise NotImplementedError("5.4: HessianAccumulator.add — 提示 / hint: python -m kata hint ex5_4")

    @property
    def value(self) -> torch.Tensor:
        """当前的 H / the current H, float64 (dim, dim)."""
        raise NotImplementedError("5.4: HessianAccumulator.value — 提示 / hint: python -m kata hint ex5_4")
