"""Chapter 3.2 / self-check question 3 — quantization-aware training: STE, learned step sizes, a QAT loop (solution).

量化感知训练（参考答案）。Rounding has zero gradient almost everywhere, so training through it needs a rule:
- straight-through estimator (STE): pass the gradient through round() as if it were the identity, and stop it where
  clamp() cut the value off (Bengio et al. 2013);
- LSQ (Esser et al., "Learned Step Size Quantization", 2020): make the step s a parameter too. With
  v = clamp(w/s, qmin, qmax) and ŵ = round(v)·s, the STE gives
      ∂ŵ/∂w = 1 inside the range, 0 outside;    ∂ŵ/∂s = round(w/s) − w/s inside, qmin or qmax outside,
  and the step's gradient is scaled by 1/√(numel · qmax) so that s and w learn at comparable rates.
QAT then trains the quantized model itself, here by distillation: the float model's next-token distribution is the
target, so no labels are needed and the student learns what the quantized weights lose.
On the real model, `python -m kata.lab --qat` (section 9) trains SmolLM2 block by block from GPTQ with this
module's RoundSTE and scale_gradient (kata/lab/block_qat.py): the whole model's backward pass would not fit a laptop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kata.llama import replace_linears, replace_modules
from kata.validate import check_float_tensor, check_num_bits, check_positive, check_positive_int


class RoundSTE(torch.autograd.Function):
    """round(x) forward; the gradient passes straight through backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """x in the forward pass; its gradient multiplied by `factor` in the backward pass."""
    return (x - x * factor).detach() + x * factor


def lsq_fake_quantize(w: torch.Tensor, step: torch.Tensor, num_bits: int, group_size: int) -> torch.Tensor:
    """ŵ = round(clamp(w/s, qmin, qmax))·s, symmetric, one learnable step per (row, group): step (out, in/g)."""
    check_float_tensor(w, "w", allow_empty=False)
    check_num_bits(num_bits, 2, 8)
    out_features, in_features = w.shape
    if in_features % group_size:
        raise ValueError(f"group_size 必须整除 in_features / group_size must divide in_features={in_features}, "
                         f"got {group_size}")
    qmin, qmax = -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1
    s = scale_gradient(step, 1 / math.sqrt(group_size * qmax))[..., None]  # LSQ's gradient scale
    v = torch.clamp(w.reshape(out_features, -1, group_size) / s, qmin, qmax)
    return (RoundSTE.apply(v) * s).reshape(w.shape)


class QATLinear(nn.Module):
    """A Linear trained through its own quantization: float weight and per-group steps are both parameters;
    every forward uses ŵ. Steps start at max|w_group| / qmax (round-to-nearest's scale)."""

    def __init__(self, linear: nn.Linear, num_bits: int, group_size: int) -> None:
        super().__init__()
        check_num_bits(num_bits, 2, 8)
        if linear.in_features % group_size:
            raise ValueError(f"group_size 必须整除 in_features / group_size must divide "
                             f"in_features={linear.in_features}, got {group_size}")
        self.num_bits, self.group_size = num_bits, group_size
        self.weight = nn.Parameter(linear.weight.detach().clone().float())
        qmax = 2 ** (num_bits - 1) - 1
        groups = self.weight.detach().reshape(linear.out_features, -1, group_size)
        self.step = nn.Parameter(groups.abs().amax(-1).clamp(min=1e-8) / qmax)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone().float())

    def quantized_weight(self) -> torch.Tensor:
        return lsq_fake_quantize(self.weight, self.step, self.num_bits, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


def prepare_qat(model: nn.Module, num_bits: int, group_size: int, skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Swap every nn.Linear not named in skip for a QATLinear, in place; returns how many."""
    return replace_linears(model, lambda linear: QATLinear(linear, num_bits, group_size), skip)


def freeze(model: nn.Module) -> int:
    """Replace every QATLinear by a plain nn.Linear holding its quantized weight ŵ; returns how many."""
    def frozen(layer: QATLinear) -> nn.Linear:
        out_features, in_features = layer.weight.shape
        linear = nn.Linear(in_features, out_features, bias=layer.bias is not None)
        linear.weight.copy_(layer.quantized_weight())
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
        return linear

    with torch.no_grad():
        return replace_modules(model, lambda name, m: isinstance(m, QATLinear), frozen)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(p_teacher ‖ p_student)."""
    teacher = F.log_softmax(teacher_logits.float(), dim=-1)
    student = F.log_softmax(student_logits.float(), dim=-1)
    return (teacher.exp() * (teacher - student)).sum(-1).mean()


def qat_finetune(student: nn.Module, teacher: nn.Module, ids: torch.Tensor, steps: int = 100, lr: float = 1e-4,
                 batch_size: int = 4, progress=None) -> list[float]:
    """Train the student's QATLinear weights and steps (everything else frozen) to match the teacher's
    next-token distributions on ids (B, T) with Adam; returns the loss of every step."""
    check_positive(lr, "lr")
    check_positive_int(steps, "steps")
    trained = [p for m in student.modules() if isinstance(m, QATLinear) for p in m.parameters()]
    if not trained:
        raise ValueError("student 里没有 QATLinear：先 prepare_qat / student has no QATLinear: call prepare_qat first")
    for param in student.parameters():
        param.requires_grad_(False)
    for param in trained:
        param.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(steps):
        batch = ids[torch.randint(0, ids.shape[0], (min(batch_size, ids.shape[0]),), generator=generator)]
        with torch.no_grad():
            target = teacher(batch)
        loss = distillation_loss(student(batch), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if progress is not None and (step + 1) % 25 == 0:
            progress(f"QAT step {step + 1}/{steps}: loss {loss.item():.4f}")
    return losses
