"""Practice (b) — capture layer inputs on calibration text; activation statistics; the Hessian (solution).
校准：用 forward hook 捕获每个线性层的输入，统计每个输入通道，累积 Hessian（参考答案）。"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def capture_inputs(model: nn.Module, names: Sequence[str], ids: torch.Tensor,
                   batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Run `ids` (B, T) through the model and return each named module's input, flattened to (B·T, in)."""
    with torch.no_grad():
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"names 中有不存在的模块 / names has unknown modules {missing}; 例如 / e.g. "
                             f"{[n for n, m in modules.items() if isinstance(m, nn.Linear)][:3]}")
        captured: dict[str, list[torch.Tensor]] = {n: [] for n in names}

        def hook(name):
            return lambda module, args: captured[name].append(args[0].reshape(-1, args[0].shape[-1]).float())

        handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
        try:  # hooks must come off even if the forward fails
            for start in range(0, ids.shape[0], batch_size):
                model(ids[start:start + batch_size])
        finally:
            for handle in handles:
                handle.remove()
        return {n: torch.cat(chunks) for n, chunks in captured.items()}


def channel_stats(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per input channel (last dim) over all tokens: mean |x|, max |x| and RMS."""
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x 必须是 (tokens, channels) / x must be (tokens, channels), got {tuple(x.shape)}")
    x = x.reshape(-1, x.shape[-1]).float()
    return {"mean_abs": x.abs().mean(0), "max_abs": x.abs().amax(0), "rms": x.pow(2).mean(0).sqrt()}


def hessian(x: torch.Tensor) -> torch.Tensor:
    """H = (2/N) Σ x xᵀ = (2/N) XᵀX over the N rows of X (N, d): the curvature of ‖XWᵀ - XŴᵀ‖² in W."""
    x = x.reshape(-1, x.shape[-1]).double()
    return (2 / x.shape[0]) * (x.T @ x)


class HessianAccumulator:
    """H = (2/N) Σ x xᵀ accumulated batch by batch, never holding all of X."""

    def __init__(self, dim: int) -> None:
        self.H = torch.zeros(dim, dim, dtype=torch.float64)
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, self.H.shape[0]).double()
        m = x.shape[0]
        # Rescale the old mean to the new count, then add this batch's share: both stay (2/N)·Σ x xᵀ.
        self.H *= self.count / (self.count + m)
        self.count += m
        self.H += (2 / self.count) * (x.T @ x)

    @property
    def value(self) -> torch.Tensor:
        return self.H
