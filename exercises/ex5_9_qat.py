"""第 3.2 节 / 自测题 3 — 量化感知训练：STE、可学习步长（LSQ）、QAT 循环 / quantization-aware training.

round() 几乎处处梯度为 0，要穿过它训练就得约定一个梯度 / rounding has zero gradient, so training needs a rule:
- 直通估计器 STE：反向时把 round 当成恒等映射 / backward treats round() as the identity (RoundSTE);
  被 clamp 截掉的地方梯度自然为 0（clamp 自己的梯度）/ clamp's own gradient stops it outside the range.
- LSQ（Esser et al. 2020）：步长 s 也是参数。v = clamp(w/s, qmin, qmax)，ŵ = round(v)·s（对称，qmin = −2^(b−1)，
  qmax = 2^(b−1) − 1），于是 / so that
      ∂ŵ/∂w = 1（范围内 / inside），0（范围外 / outside）;  ∂ŵ/∂s = round(w/s) − w/s（内），qmin 或 qmax（外）;
  s 的梯度再乘 1/√(g · qmax)（g = 组大小），让 s 和 w 学得一样快 / scaled so s and w learn at similar rates.
  scale_gradient(x, f) = (x − x·f).detach() + x·f：前向是 x，反向梯度乘 f / forward x, gradient times f.

lsq_fake_quantize(w, step, num_bits, group_size): w (out, in)，step (out, in/g) → ŵ，形状同 w。
QATLinear(linear, num_bits, group_size): 参数 weight（float32 拷贝）、step（初值 max|w_组| / qmax）、bias（若有）；
    forward 用 quantized_weight() = lsq_fake_quantize(weight, step, …)。
prepare_qat(model, num_bits, group_size, skip): 把名字不含 skip 的 nn.Linear 换成 QATLinear，返回个数
    （可用 kata.llama.replace_linears）。
freeze(model): 把每个 QATLinear 换回 nn.Linear，权重是 ŵ（训练结束后的量化权重），返回个数。
distillation_loss(student_logits, teacher_logits): 各位置 KL(p_teacher ‖ p_student) 的平均。
qat_finetune(student, teacher, ids, steps, lr, batch_size, progress): 只训练 QATLinear 的参数（其余冻结），
    Adam(lr)；g = torch.Generator().manual_seed(0)，每步取 ids[torch.randint(0, n, (min(batch_size, n),),
    generator=g)]（n = ids 的行数，有放回），蒸馏损失；返回每步的 loss；每 25 步调用 progress(一行文字，
    含步数 i/n，如 "25/100")（若给出）/ train the QATLinear parameters only, distilling the teacher.

坏输入 / bad input: lr ≤ 0 → ValueError（消息含 "lr"）; steps 不是正整数 → ValueError; student 里没有 QATLinear →
    ValueError（消息含 "QATLinear"）; num_bits 不在 2..8 → ValueError;
    group_size 不整除 in_features → ValueError（kata.validate.check_group_size 可以帮你查 / can check it）;
    w 不是浮点张量 → TypeError; w 为空或含 NaN → ValueError.
    错误信息写明参数名 / every message names the argument.

真实模型 / on the real model: python -m kata.lab --qat（第 9 节）用你的 RoundSTE 和 scale_gradient 从 GPTQ 出发
    逐块训练 SmolLM2（kata/lab/block_qat.py）/ section 9 trains SmolLM2 block by block from GPTQ with your RoundSTE
    and scale_gradient.

答案规则 / answer rules: python -m kata rules ex5_9
提示 / hints: python -m kata hint ex5_9
"""

from __future__ import annotations

import torch
from torch import nn


class RoundSTE(torch.autograd.Function):
    """前向 round(x)，反向梯度原样通过 / round(x) forward, the gradient straight through backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("5.9: RoundSTE.forward — 提示 / hint: python -m kata hint ex5_9")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("5.9: RoundSTE.backward — 提示 / hint: python -m kata hint ex5_9")


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """前向是 x，反向梯度乘 factor / x forward; its gradient times factor."""
    raise NotImplementedError("5.9: scale_gradient — 提示 / hint: python -m kata hint ex5_9")


def lsq_fake_quantize(w: torch.Tensor, step: torch.Tensor, num_bits: int, group_size: int) -> torch.Tensor:
    """ŵ = round(clamp(w/s, qmin, qmax))·s，每 (行, 组) 一个可学习的 s / one learnable step per (row, group)."""
    raise NotImplementedError("5.9: lsq_fake_quantize — 提示 / hint: python -m kata hint ex5_9")


class QATLinear(nn.Module):
    def __init__(self, linear: nn.Linear, num_bits: int, group_size: int) -> None:
        """参数 weight、step、bias（见上）/ parameters weight, step, bias (see above)."""
        super().__init__()
        raise NotImplementedError("5.9: QATLinear.__init__ — 提示 / hint: python -m kata hint ex5_9")

    def quantized_weight(self) -> torch.Tensor:
        raise NotImplementedError("5.9: QATLinear.quantized_weight — 提示 / hint: python -m kata hint ex5_9")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("5.9: QATLinear.forward — 提示 / hint: python -m kata hint ex5_9")


def prepare_qat(model: nn.Module, num_bits: int, group_size: int, skip: tuple[str, ...] = ("lm_head",)) -> int:
    """就地换成 QATLinear，返回个数 / Swap in QATLinear in place; return how many."""
    raise NotImplementedError("5.9: prepare_qat — 提示 / hint: python -m kata hint ex5_9")


def freeze(model: nn.Module) -> int:
    """QATLinear → 持有 ŵ 的 nn.Linear，返回个数 / back to nn.Linear holding ŵ; return how many."""
    raise NotImplementedError("5.9: freeze — 提示 / hint: python -m kata hint ex5_9")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """mean KL(p_teacher ‖ p_student)."""
    raise NotImplementedError("5.9: distillation_loss — 提示 / hint: python -m kata hint ex5_9")


def qat_finetune(student: nn.Module, teacher: nn.Module, ids: torch.Tensor, steps: int = 100, lr: float = 1e-4,
                 batch_size: int = 4, progress=None) -> list[float]:
    """蒸馏训练，返回每步 loss / distil; return each step's loss."""
    raise NotImplementedError("5.9: qat_finetune — 提示 / hint: python -m kata hint ex5_9")
