"""Practice (b) — AWQ: activation-aware scales, clip search, folding, for a layer and a model (solution).

Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and Acceleration" (2023).
Input channels that see large activations matter most. Scale them up before quantizing (their relative
rounding error shrinks) and divide the scale back out of the input, which is free when folded into the
preceding RMSNorm or Linear:
    y = x·Wᵀ = (x / s)·(W·diag(s))ᵀ,   s = mean|x|^α / sqrt(max · min),   α ∈ {0, 1/grid, …}  (α = 0 is RTN)
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from kata.llama import Llama, RMSNorm
from kata.oracles import rtn
from kata.sequential import block_linear_inputs, first_block_input, rope, run_block


def awq_scales(act_mean_abs: torch.Tensor, ratio: float) -> torch.Tensor:
    """s = mean|x|^ratio, normalised so that max(s) · min(s) = 1."""
    s = act_mean_abs.float().clamp(min=1e-4).pow(ratio)
    return s / (s.max() * s.min()).sqrt()


def search_awq_scale(weights: Sequence[torch.Tensor], x: torch.Tensor, num_bits: int = 4, group_size: int = 64, *,
                     symmetric: bool = False, grid: int = 20) -> tuple[float, torch.Tensor]:
    """The ratio α in {0, 1/grid, …, (grid-1)/grid} whose scales minimise the output error summed over the
    linears sharing input x (N, in), mean over tokens of ‖x·Wᵀ − (x/s)·Q(W·s)ᵀ‖², each linear's divided by its
    output width; returns (α, s)."""
    with torch.no_grad():
        x = x.float()
        act = x.abs().mean(0)
        # The error x·Dᵀ with D = Q(W·s)/s − W has mean square trace(D·C·Dᵀ), C = XᵀX / N: one Gram matrix
        # (GPTQ's Hessian / 2) replaces a pass over every token for every candidate.
        gram = x.T @ x / x.shape[0]
        best = (float("inf"), 0.0, torch.ones_like(act))
        for k in range(grid):
            s = awq_scales(act, k / grid)
            loss = 0.0
            for w in weights:
                D = rtn(w.float() * s, num_bits, group_size, symmetric=symmetric) / s - w.float()
                loss += ((D @ gram) * D).sum().item() / w.shape[0]
            if loss < best[0]:
                best = (loss, k / grid, s)
        return best[1], best[2]


def search_clip(w: torch.Tensor, x: torch.Tensor, num_bits: int = 4, group_size: int = 64, *,
                symmetric: bool = False, grid: int = 20, max_shrink: float = 0.5) -> torch.Tensor:
    """Per (row, group), the clip ratio c ∈ {1, 1 − 1/grid, …, 1 − max_shrink} minimising the group's share of
    the output error, mean over tokens of (x_g · (w_g − ŵ_g)ᵀ)²; returns c shaped (out, in / group_size)."""
    with torch.no_grad():
        out_features, in_features = w.shape
        groups = in_features // group_size
        xg = x.float().reshape(-1, groups, group_size).transpose(0, 1)  # (G, N, g)
        gram = torch.bmm(xg.transpose(1, 2), xg) / xg.shape[1]  # (G, g, g): each group's own C = X_gᵀX_g / N
        best_err = torch.full((out_features, groups), float("inf"))
        best = torch.ones(out_features, groups)
        for step in range(int(grid * max_shrink) + 1):
            c = 1 - step / grid
            diff = (rtn(w, num_bits, group_size, symmetric=symmetric, clip_ratio=c) - w.float()).reshape(
                out_features, groups, -1)
            diff = diff.transpose(0, 1)  # (G, out, g)
            err = (torch.bmm(diff, gram) * diff).sum(-1).T  # d·C·dᵀ per (out, G)
            better = err < best_err
            best_err, best = torch.where(better, err, best_err), torch.where(better, c, best)
        return best


def fold_scales(previous: nn.Module, following: Sequence[nn.Linear], s: torch.Tensor) -> None:
    """Divide s out of `previous` (an RMSNorm's weight, or a Linear's output rows) and multiply it into the
    input columns of each following Linear: the float model computes exactly the same function."""
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


def awq_quantize_model(model: Llama, calib_ids: torch.Tensor, num_bits: int = 4, group_size: int = 64, *,
                       symmetric: bool = False, grid: int = 20, clip: bool = True,
                       max_tokens: int = 4096, round_weights: bool = True) -> dict[str, float]:
    """AWQ every block in place, block by block, then round its linears to the grid (ŵ stays float).
    With round_weights=False only the scales are folded in (the float model is unchanged), e.g. for GPTQ next.

    Scales fold into input_layernorm (q, k, v), post_attention_layernorm (gate, up) and up_proj (down).
    o_proj is left unscaled: with 9 query heads sharing 3 value heads its scale cannot fold into v_proj.
    Searches see about `max_tokens` tokens: count = max(1, min(n, max_tokens // T)) of the n windows of length T,
    spread evenly over the calibration text (torch.linspace(0, n − 1, count)).
    """
    with torch.no_grad():
        started = time.perf_counter()
        cos, sin = rope(model, calib_ids.shape[1])
        count = max(1, min(calib_ids.shape[0], max_tokens // calib_ids.shape[1]))
        searched = torch.linspace(0, calib_ids.shape[0] - 1, count).long()  # the windows the searches see
        x = first_block_input(model, calib_ids[searched])  # only these windows: no other activation is ever used
        ratios = []
        for block in model.layers:
            inputs = block_linear_inputs(block, x, cos, sin)
            attn, mlp = block.self_attn, block.mlp
            plan = [  # (input captured, where the scale folds, linears sharing that input)
                ("self_attn.q_proj", block.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj]),
                ("mlp.gate_proj", block.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj]),
                ("mlp.down_proj", mlp.up_proj, [mlp.down_proj]),
                ("self_attn.o_proj", None, [attn.o_proj]),
            ]
            for key, previous, layers in plan:
                sample = inputs[key]
                if previous is not None:
                    ratio, s = search_awq_scale([m.weight for m in layers], sample, num_bits, group_size,
                                                symmetric=symmetric, grid=grid)
                    fold_scales(previous, layers, s)
                    sample = sample / s  # what the scaled layers now receive
                    ratios.append(ratio)
                if not round_weights:
                    continue
                for layer in layers:
                    c = search_clip(layer.weight, sample, num_bits, group_size, symmetric=symmetric) if clip else 1.0
                    layer.weight.copy_(rtn(layer.weight, num_bits, group_size, symmetric=symmetric, clip_ratio=c))
            x = run_block(block, x, cos, sin)
        return {"seconds": time.perf_counter() - started, "mean_ratio": sum(ratios) / len(ratios)}
