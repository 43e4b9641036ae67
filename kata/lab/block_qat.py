"""Block-wise quantization-aware training on a 2-core CPU: the lab's QAT on the real model (section 9).

逐块量化感知训练（EfficientQAT 的 Block-AP 思路，Chen et al. 2024）：从最好的 PTQ 结果出发，一块一块地训练
该块线性层的权重、步长和零点，让量化后的块输出逼近浮点模型同一块的输出。
Block by block, starting from a PTQ result (its weights already on the grid), train each block's weights, steps
and zero points so that the quantized block, fed the output of the quantized blocks before it, reproduces the
float model's block output (mean squared error). One block's graph at a time fits a laptop; the whole model's
backward pass would not fit the time.

    ŵ = (clamp(round(w / s) + round(z), 0, 2ᵇ − 1) − round(z)) · s      (asymmetric, per (row, group))

round() is the target's 5.9 RoundSTE (straight-through) and s learns as in LSQ with the target's scale_gradient;
the zero point z is learned too (LSQ+, Bhalgat et al. 2020) and rounded, so the result stores exactly as the PTQ
format did (same bits per weight). The start reproduces the PTQ weights exactly: each group's step is recovered
from the distinct values it holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from kata.llama import Llama, replace_modules
from kata.sequential import CALIBRATION_DTYPE, autocast, first_block_input, rope, run_block
from kata.validate import check_num_bits, check_positive, check_positive_int


def grid_of(w: torch.Tensor, num_bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(step, zero) per (row, group), each (out, in / group_size), of weights that already lie on an asymmetric
    num_bits grid: the step is the smallest gap between a group's distinct values (never less than range / qmax),
    the zero point puts the group's smallest value on code 0."""
    qmax = 2 ** num_bits - 1
    groups = w.detach().float().reshape(w.shape[0], -1, group_size).sort(-1).values
    low, high = groups[..., 0], groups[..., -1]
    gaps = groups.diff(dim=-1)
    distinct = gaps > 1e-4 * (high - low)[..., None]
    step = torch.where(distinct, gaps, torch.inf).amin(-1)
    constant = torch.where(low == 0, 1.0, low.abs())  # one value v in the group: step |v| puts it on code 0
    step = torch.where(step.isinf(), constant, step).maximum((high - low) / qmax)
    return step, torch.round(-low / step)


class GridLinear(nn.Module):
    """A Linear trained through its asymmetric grid: weight, step and zero point are parameters (a bias is kept
    as it is)."""

    def __init__(self, linear: nn.Linear, num_bits: int, group_size: int, qat: ModuleType) -> None:
        super().__init__()
        self.num_bits, self.group_size, self.qat = num_bits, group_size, qat
        self.weight = nn.Parameter(linear.weight.detach().float().clone())
        step, zero = grid_of(self.weight, num_bits, group_size)
        self.step, self.zero = nn.Parameter(step), nn.Parameter(zero)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def quantized_weight(self) -> torch.Tensor:
        out_features, in_features = self.weight.shape
        qmax = 2 ** self.num_bits - 1
        step = self.qat.scale_gradient(self.step, 1 / math.sqrt(self.group_size * qmax))[..., None]  # LSQ's scale
        zero = self.qat.RoundSTE.apply(self.zero)[..., None]
        codes = torch.clamp(self.qat.RoundSTE.apply(self.weight.reshape(out_features, -1, self.group_size) / step)
                            + zero, 0, qmax)
        return ((codes - zero) * step).reshape(out_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def frozen(self) -> nn.Linear:
        """A plain nn.Linear holding ŵ."""
        out_features, in_features = self.weight.shape
        linear = nn.Linear(in_features, out_features, bias=self.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(self.quantized_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear.requires_grad_(False)


def grid_linears(block: nn.Module, num_bits: int, group_size: int, qat: ModuleType) -> list[GridLinear]:
    """Swap the block's linears for GridLinears, in place, and return them, the only trainable part of the block
    (its norms stay as they are). Raises ValueError unless each starts exactly at its PTQ weights: ŵ = w."""
    replace_modules(block, lambda name, m: isinstance(m, nn.Linear),
                    lambda linear: GridLinear(linear, num_bits, group_size, qat))
    layers = [m for m in block.modules() if isinstance(m, GridLinear)]
    block.requires_grad_(False)
    for layer in layers:
        layer.requires_grad_(True)
        with torch.no_grad():
            if not torch.allclose(layer.quantized_weight(), layer.weight, atol=1e-6, rtol=1e-4):
                raise ValueError(f"model 的线性层不在 {num_bits} 比特网格上：先做 PTQ / the model's linears are "
                                 f"not on a {num_bits}-bit grid of groups of {group_size}: quantize it first")
    return layers


def block_qat(model: Llama, teacher: Llama, calib_ids: torch.Tensor, num_bits: int, group_size: int = 64, *,
              qat: ModuleType, steps: int = 100, lr: float = 3e-3, step_lr: float = 1e-5, batch_size: int = 2,
              progress: Callable[[str], None] = print) -> dict[str, float]:
    """Train `model` (a PTQ result of `teacher`: every block linear on its num_bits grid) block by block, in place;
    each block takes `steps` Adam steps on `batch_size` windows of calib_ids (B, T), learning rate `lr` for the
    weights and `step_lr` for steps and zero points, cosine-decayed. The block sees the output of the trained
    blocks before it; its target is the float teacher's block output. Every linear ends as an nn.Linear holding ŵ.
    Returns seconds and the summed block-output MSE before (the PTQ start) and after training."""
    check_num_bits(num_bits, 2, 8)
    check_positive(lr, "lr")
    check_positive(step_lr, "step_lr")
    check_positive_int(steps, "steps")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    cos, sin = rope(model, calib_ids.shape[1])
    x = first_block_input(model, calib_ids)  # the quantized model's stream, block by block
    x_float = x.clone()  # the teacher's
    total_ptq = total_qat = 0.0
    for index, (block, float_block) in enumerate(zip(model.layers, teacher.layers, strict=True)):
        target = run_block(float_block, x_float, cos, sin, dtype=None)
        with torch.no_grad():
            before = F.mse_loss(run_block(block, x, cos, sin, dtype=None), target).item()
        layers = grid_linears(block, num_bits, group_size, qat)
        optimizer = torch.optim.Adam([{"params": [m.weight for m in layers], "lr": lr},
                                      {"params": [p for m in layers for p in (m.step, m.zero)], "lr": step_lr}])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(steps):
            batch = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=generator)
            with autocast(CALIBRATION_DTYPE):  # bf16 where the CPU has it: 1.3× faster (measured); targets float32
                loss = F.mse_loss(block(x[batch], cos, sin).float(), target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        with torch.no_grad():
            replace_modules(block, lambda name, m: isinstance(m, GridLinear), GridLinear.frozen)
            x, x_float = run_block(block, x, cos, sin, dtype=None), target
            after = F.mse_loss(x, target).item()
        total_ptq, total_qat = total_ptq + before, total_qat + after
        progress(f"QAT W{num_bits} block {index + 1}/{len(model.layers)}: block-output MSE {before:.4f} (PTQ) → "
                 f"{after:.4f}, {time.perf_counter() - started:.0f} s")
    return {"seconds": time.perf_counter() - started, "mse_ptq": total_ptq, "mse_qat": total_qat}
