"""Practice (c) / self-check 4.1 Q2 — W8A8 with integer matmuls, and SmoothQuant (solution). SmoothQuant（参考答案）。

Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language Models" (2023).
Activations have a few channels with huge values; weights do not. Divide each input channel j by
    s_j = max|X_j|^α / max|W_j|^(1−α)
and multiply the weight's column j by it: X·Wᵀ = (X/s)·(W·diag(s))ᵀ. The outliers move from the activations
into the weights, which take them better; 1/s folds into the RMSNorm (or Linear) before, so it costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kata.llama import Llama, RMSNorm, replace_linears
from kata.sequential import block_linear_inputs, first_block_input, rope, run_block
from kata.validate import check_choice, check_float_tensor

GRANULARITIES = ("token", "tensor")
ALPHAS = tuple(i / 10 for i in range(11))  # 0, 0.1, …, 1


def quantize_activations(x: torch.Tensor, granularity: str = "token") -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric INT8 for activations x (..., in): scale = max|x| / 127 per token (row) or over the
    whole tensor, taken at run time. Returns (q int8 of x's shape, scale float32 (..., 1) or a 0-dim tensor)."""
    check_float_tensor(x, "x", allow_empty=False)
    check_choice(granularity, GRANULARITIES, "granularity")
    absmax = x.abs().amax(-1, keepdim=True) if granularity == "token" else x.abs().amax()
    scale = absmax.float().clamp(min=1e-8) / 127
    q = torch.clamp(torch.round(x.float() / scale), -127, 127).to(torch.int8)
    return q, scale


EMULATION_CHUNK = 1024  # along K: |Σ| ≤ 128²·1024 = 2²⁴, so every partial sum is an integer float32 holds


def int_mm_runs(device: torch.device | str, m: int, k: int, n: int) -> bool:
    """Whether torch._int_mm takes (m, k) @ (k, n) on this device: any shape on the CPU; on CUDA m > 16 and k, n
    multiples of 8; nowhere else."""
    kind = torch.device(device).type
    return kind == "cpu" or (kind == "cuda" and m > 16 and k % 8 == 0 and n % 8 == 0)


def int8_matmul_exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) int8 @ b (N, K)ᵀ int8 → int32, emulated in float32 over chunks of at most EMULATION_CHUNK along K:
    a chunk's sums stay within 128²·1024 = 2²⁴, integers float32 holds exactly, and the chunks add up in int32 —
    the integer result bit for bit, on any device, at float32's speed."""
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.int32, device=a.device)
    for k in range(0, a.shape[1], EMULATION_CHUNK):
        out += (a[:, k:k + EMULATION_CHUNK].float() @ b[:, k:k + EMULATION_CHUNK].float().T).to(torch.int32)
    return out


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) int8 @ b (N, K)ᵀ int8 with int32 accumulation: torch._int_mm where it runs, else emulated."""
    if a.dtype != torch.int8 or b.dtype != torch.int8:
        raise TypeError(f"a 和 b 必须是 int8 / a and b must be int8, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"形状应为 (M, K) 与 (N, K) / shapes must be (M, K) and (N, K), got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if int_mm_runs(a.device, a.shape[0], a.shape[1], b.shape[0]):
        return torch._int_mm(a, b.T)
    return int8_matmul_exact(a, b)


class W8A8Linear(nn.Module):
    """y = (sx·sw) ⊙ (q_x · q_wᵀ) + b: int8 weights (per output channel, symmetric), int8 activations
    quantized at run time, an integer matmul accumulated in int32, one float rescale at the end."""

    def __init__(self, in_features: int, out_features: int, granularity: str = "token", bias: bool = False) -> None:
        super().__init__()
        check_choice(granularity, GRANULARITIES, "granularity")
        self.in_features, self.out_features, self.granularity = in_features, out_features, granularity
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    granularity: str = "token") -> W8A8Linear:
        layer = cls(weight.shape[1], weight.shape[0], granularity, bias=bias is not None)
        w = weight.detach().float()
        scale = w.abs().amax(1).clamp(min=1e-8) / 127
        layer.qweight.copy_(torch.clamp(torch.round(w / scale[:, None]), -127, 127))
        layer.weight_scale.copy_(scale)
        if bias is not None:
            layer.bias.copy_(bias.detach())
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, granularity: str = "token") -> W8A8Linear:
        return cls.from_weight(linear.weight, linear.bias, granularity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        q, scale = quantize_activations(rows, self.granularity)
        y = int8_matmul(q, self.qweight).float() * scale * self.weight_scale  # int32 → float, once
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


def smoothing_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^α / max|W_j|^(1−α) per input channel j (both maxima clamped away from 0)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha 必须在 [0, 1] 内 / alpha must be a number in [0, 1], got {alpha!r}")
    if act_absmax.shape != weight_absmax.shape:
        raise ValueError(f"act_absmax 与 weight_absmax 形状必须相同 / act_absmax and weight_absmax must match, "
                         f"got {tuple(act_absmax.shape)} and {tuple(weight_absmax.shape)}")
    return act_absmax.float().clamp(min=1e-5).pow(alpha) / weight_absmax.float().clamp(min=1e-5).pow(1 - alpha)


def fold_smoothing(previous: nn.Module, following: Sequence[nn.Linear], s: torch.Tensor) -> None:
    """X/s and W·diag(s): divide s out of the RMSNorm weight (or the output rows of the Linear) that makes X,
    multiply it into the input columns of every Linear reading X. The float model's function is unchanged."""
    with torch.no_grad():
        if isinstance(previous, RMSNorm):
            previous.weight.div_(s)
        elif isinstance(previous, nn.Linear):
            previous.weight.div_(s[:, None])
            if previous.bias is not None:
                previous.bias.div_(s)
        else:
            raise TypeError(f"previous 必须是 RMSNorm 或 nn.Linear / previous must be RMSNorm or nn.Linear, "
                            f"got {type(previous).__name__}")
        for layer in following:
            layer.weight.mul_(s)


def search_alpha(weights: Sequence[torch.Tensor], x: torch.Tensor, granularity: str = "token",
                 alphas: Sequence[float] = ALPHAS) -> tuple[float, torch.Tensor]:
    """The α among `alphas` whose smoothing gives the least W8A8 output error on x; returns (α, s)."""
    with torch.no_grad():
        x = x.float()
        act_absmax = x.abs().amax(0)
        weight_absmax = torch.stack([w.abs().amax(0) for w in weights]).amax(0)  # per input channel, over all
        w = torch.cat(list(weights)).float()  # the linears sharing x, stacked: one matmul for all of them
        expected = x @ w.T
        best = (float("inf"), 0.0, torch.ones_like(act_absmax))
        for alpha in alphas:
            s = smoothing_scales(act_absmax, weight_absmax, alpha)
            got = W8A8Linear.from_weight(w * s, granularity=granularity)(x / s)
            error = (got - expected).pow(2).sum(-1).mean().item()  # Σ over the linears of the mean ‖error‖²
            if error < best[0]:
                best = (error, alpha, s)
        return best[1], best[2]


def swap_linears(model: nn.Module, granularity: str = "token", skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Replace every nn.Linear not named in `skip` by a W8A8Linear, in place; returns how many."""
    return replace_linears(model, lambda linear: W8A8Linear.from_linear(linear, granularity), skip)


def smoothquant_model(model: Llama, calib_ids: torch.Tensor, granularity: str = "token",
                      alphas: Sequence[float] = ALPHAS) -> dict[str, list[float]]:
    """Smooth every block in place, α searched per place, then swap every block linear for a W8A8Linear.

    Smoothing folds into input_layernorm (q, k, v), post_attention_layernorm (gate, up) and up_proj (down);
    o_proj stays as it is (its input's heads share value heads, so no single row scale folds into v_proj).
    Smoothing leaves the float model unchanged, so the statistics come from the float model, block by block."""
    with torch.no_grad():
        check_choice(granularity, GRANULARITIES, "granularity")
        for name in ("input_layernorm", "post_attention_layernorm"):
            if not all(isinstance(getattr(block, name, None), RMSNorm) for block in model.layers):
                raise TypeError(f"model 的每个块都需要 RMSNorm {name} / every block of model needs an RMSNorm {name}")
        cos, sin = rope(model, calib_ids.shape[1])
        x = first_block_input(model, calib_ids)
        chosen = []
        for block in model.layers:
            inputs = block_linear_inputs(block, x, cos, sin)
            attn, mlp = block.self_attn, block.mlp
            places = (("self_attn.q_proj", block.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj]),
                      ("mlp.gate_proj", block.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj]),
                      ("mlp.down_proj", mlp.up_proj, [mlp.down_proj]))
            for key, previous, layers in places:
                alpha, s = search_alpha([m.weight for m in layers], inputs[key], granularity, alphas)
                fold_smoothing(previous, layers, s)
                chosen.append(alpha)
            x = run_block(block, x, cos, sin)
        swap_linears(model.layers, granularity)
        return {"alphas": chosen}
