"""Practice (b) — GPTQ for a layer and, sequentially, for a model (solution). GPTQ（参考答案）。

Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers" (2022),
Algorithm 1. Quantize the columns of W one at a time; after each, spread its rounding error over the columns
not yet quantized so that the layer output X·Wᵀ moves as little as possible:
    err = (w_q − quant(w_q)) / [H⁻¹]_qq,     W[:, q:] −= err · [H⁻¹]_{q, q:}
with H⁻¹ taken as the upper Cholesky factor of the inverse of H = (2/N) XᵀX + λI.
"""

from __future__ import annotations

import time

import torch

from kata.llama import Llama
from kata.oracles import code_range, group_qparams
from kata.sequential import INPUT_GROUPS, block_linear_inputs, first_block_input, gram, linears, rope, run_block
from kata.validate import check_group_size


def _to_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Round w onto the grid (q − zero)·scale, q ∈ [qmin, qmax]; all three are (out,)."""
    return torch.round(w / scale).add_(zero).clamp_(qmin, qmax).sub_(zero).mul_(scale)


def _upper_cholesky_of_inverse(H: torch.Tensor) -> torch.Tensor:
    """U, upper triangular, with UᵀU = H⁻¹: gptq.py's cholesky → cholesky_inverse → cholesky in one Cholesky and
    one triangular solve. Reversing rows and columns (J) swaps lower and upper: if J·H·J = L·Lᵀ then
    H⁻¹ = (J·L⁻ᵀ·J)·(J·L⁻¹·J) = Uᵀ·U with U = J·L⁻¹·J."""
    L = torch.linalg.cholesky(H.flip(0, 1))
    return torch.linalg.solve_triangular(L, torch.eye(len(H), dtype=H.dtype), upper=False).flip(0, 1)


def gptq_quantize_layer(w: torch.Tensor, H: torch.Tensor, num_bits: int = 4, group_size: int | None = 64, *,
                        symmetric: bool = False, damp: float = 0.01, block_size: int = 128,
                        act_order: bool = False) -> torch.Tensor:
    """GPTQ-quantize w (out, in) given H (in, in); returns ŵ on the quantization grid, float32, w's shape.

    Group scales are fitted when a group's first column comes up, from the weights as error feedback has left
    them; groups are contiguous in the original column order even with act_order, so ŵ stores as usual.
    """
    out_features, K = w.shape
    if H.shape != (K, K):
        raise ValueError(f"H 的形状应为 / H must be ({K}, {K}) for w {tuple(w.shape)}, got {tuple(H.shape)}")
    check_group_size(group_size, K)
    W, H = w.detach().clone().float(), H.detach().clone().double()
    qmin, qmax = code_range(num_bits, symmetric)

    dead = H.diagonal() == 0  # inputs that were always zero: their weights cannot matter
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(H.diagonal(), descending=True) if act_order else torch.arange(K)
    invperm = torch.argsort(perm)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * H.diagonal().mean() * torch.eye(K, dtype=H.dtype)
    Hinv = _upper_cholesky_of_inverse(H).float()

    def params(cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, zero = group_qparams(cols, num_bits, None, symmetric=symmetric)  # one (scale, zero) per row
        return scale[:, 0], zero[:, 0].float()

    group_params = {} if group_size else {None: params(W)}
    groups = (perm // group_size).tolist() if group_size else [None] * K  # column → its group (python ints)
    Q = torch.zeros_like(W)
    for i1 in range(0, K, block_size):  # lazy batch updates: columns i1:i2 now, the rest once per block
        i2 = min(i1 + block_size, K)
        # This block's columns as contiguous rows (W1[i] is column i1 + i of W): every step below reads and
        # writes whole rows, about 1.5× faster than strided columns, with the same numbers.
        W1, Err1, Hinv1 = W[:, i1:i2].T.contiguous(), torch.zeros(i2 - i1, out_features), Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            group = groups[i1 + i]
            if group not in group_params:
                members = invperm[group * group_size:(group + 1) * group_size]  # positions, all ≥ i1 + i
                current = torch.empty(out_features, group_size)
                inside = members < i2
                current[:, inside] = W1[members[inside] - i1].T
                later = members[~inside]  # not yet given this block's pending updates
                current[:, ~inside] = W[:, later] - Err1[:i].T @ Hinv[i1:i1 + i, later]
                group_params[group] = params(current)
            scale, zero = group_params[group]
            q = _to_grid(W1[i], scale, zero, qmin, qmax)
            Q[:, i1 + i] = q
            err = (W1[i] - q) / Hinv1[i, i]
            W1[i:] -= Hinv1[i, i:][:, None] * err[None, :]
            Err1[i] = err
        W[:, i2:] -= Err1.T @ Hinv[i1:i2, i2:]
    return Q[:, invperm]


def gptq_quantize_model(model: Llama, calib_ids: torch.Tensor, num_bits: int = 4, group_size: int | None = 64, *,
                        symmetric: bool = False, act_order: bool = True, damp: float = 0.01,
                        block_size: int = 128) -> dict[str, float]:
    """Quantize every block's linears in place, block by block: each block's Hessians come from the
    outputs of the blocks already quantized. lm_head and the embeddings stay as they are."""
    with torch.no_grad():
        started = time.perf_counter()
        cos, sin = rope(model, calib_ids.shape[1])
        x = first_block_input(model, calib_ids)
        for block in model.layers:
            inputs = block_linear_inputs(block, x, cos, sin)
            for key, names in INPUT_GROUPS.items():
                X = inputs[key]
                H = (2 / X.shape[0]) * gram(X)  # ex5_4's Hessian (2/N)·XᵀX, in float32 for speed
                # GPTQ treats rows independently, so linears sharing an input share H, its Cholesky factor and the
                # column order: quantize them stacked, as one matrix (q/k/v, gate/up), and split the rows back.
                layers = linears(block, names)
                Q = gptq_quantize_layer(torch.cat([layer.weight for layer in layers]), H, num_bits, group_size,
                                        symmetric=symmetric, damp=damp, block_size=block_size, act_order=act_order)
                for layer, rows in zip(layers, Q.split([layer.out_features for layer in layers]), strict=True):
                    layer.weight.copy_(rows)
            x = run_block(block, x, cos, sin)
        return {"seconds": time.perf_counter() - started, "layers": 7 * len(model.layers)}


