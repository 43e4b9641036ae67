"""Block-by-block plumbing for calibration flows on a kata.llama.Llama (GPTQ, AWQ): no quantization here.

逐块运行的管道：取得第一块的输入、在一块内捕获各线性层的输入、把一块向前算一步。量化算法不在这里。
Run the model one block at a time, so that each block is calibrated on the output of the blocks already
quantized before it:

    cos, sin = rope(model, calib_ids.shape[1])           # RoPE tables for the window length
    x = first_block_input(model, calib_ids)              # (B, T, hidden): the embeddings, block 0's input
    for block in model.layers:
        inputs = block_linear_inputs(block, x, cos, sin) # {"self_attn.q_proj": (B·T, 576), ...}, one per group
        for key, names in INPUT_GROUPS.items():          # "self_attn.q_proj" → q, k and v share that input
            for layer in linears(block, names):          # the nn.Linear modules themselves
                ...                                      # quantize layer.weight in place from inputs[key]
        x = run_block(block, x, cos, sin)                # the quantized block's output feeds the next block

Names inside a block (as in Hugging Face's Llama): input_layernorm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp.{gate,up,down}_proj; `print(model.layers[0])` shows them.

block_linear_inputs and run_block compute under bfloat16 autocast by default (CALIBRATION_DTYPE) where the CPU
multiplies bf16 natively (AVX-512 BF16 or AMX): there that is about 2–5× faster, and its rounding (≈ 0.4 %) is far
below 4-bit quantization noise. Elsewhere (an AVX2-only CPU emulates bf16, measured 57× slower than float32 on an
AMD EPYC) the default is float32. Pass dtype=None for float32. Captured inputs and outputs are float32 either way.
在有原生 bf16 的 CPU 上默认 bf16 autocast（更快，误差远小于 4 比特噪声），否则用 float32；返回值都是 float32。

gram(X) = XᵀX, the Hessian's product, in about 75 % of a plain matmul's time with the same numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from kata import cpu
from kata.llama import Block, Llama, rope_tables

# Linears that read the same tensor: quantizers capture one input per group.
INPUT_GROUPS = {
    "self_attn.q_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "self_attn.o_proj": ("self_attn.o_proj",),
    "mlp.gate_proj": ("mlp.gate_proj", "mlp.up_proj"),
    "mlp.down_proj": ("mlp.down_proj",),
}


CALIBRATION_DTYPE = torch.bfloat16 if cpu.has_fast_bf16() else None  # float32 where bf16 would be emulated


def autocast(dtype: torch.dtype | None):
    """CPU autocast to `dtype`, or nothing when dtype is None."""
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


@torch.no_grad()
def first_block_input(model: Llama, ids: torch.Tensor) -> torch.Tensor:
    """The embeddings: the input of block 0, (B, T, hidden)."""
    return model.embed_tokens(ids).float()


def rope(model: Llama, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    return rope_tables(model.cfg.head_dim, seq_len, model.cfg.rope_theta)


class _Captured(Exception):
    """Raised by the last capture hook of a batch: the rest of the block's forward is not needed."""


@torch.no_grad()
def run_block(block: Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, batch_size: int = 8,
              dtype: torch.dtype | None = CALIBRATION_DTYPE) -> torch.Tensor:
    """The block's output for x (B, T, hidden), a few sequences at a time, float32."""
    with autocast(dtype):
        return torch.cat([block(x[i:i + batch_size], cos, sin).float() for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def block_linear_inputs(block: Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                        names: Sequence[str] = tuple(INPUT_GROUPS), batch_size: int = 8,
                        dtype: torch.dtype | None = CALIBRATION_DTYPE) -> dict[str, torch.Tensor]:
    """Inputs of the named linears of one block for x, flattened to (B·T, in), float32.

    Each batch's forward stops as soon as every named input is captured (for the default names: before
    down_proj runs), which saves a fifth of the pass and changes no number."""
    captured: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    calls = 0

    def capture(name: str, inputs: torch.Tensor) -> None:
        nonlocal calls
        captured[name].append(inputs.reshape(-1, inputs.shape[-1]).float())
        calls += 1
        if calls % len(names) == 0:  # each named linear runs once per forward: this batch is complete
            raise _Captured

    handles = [block.get_submodule(n).register_forward_pre_hook(lambda module, args, n=n: capture(n, args[0]))
               for n in names]
    try:
        with autocast(dtype):
            for i in range(0, x.shape[0], batch_size):
                try:
                    block(x[i:i + batch_size], cos, sin)
                except _Captured:
                    pass
    finally:
        for handle in handles:
            handle.remove()
    return {n: torch.cat(chunks) for n, chunks in captured.items()}


def gram(x: torch.Tensor) -> torch.Tensor:
    """XᵀX for x (N, K), float32. XᵀX is symmetric: compute the four block-rows on and above the diagonal and
    mirror them — 10 of 16 blocks, in about 75 % of x.T @ x's time (K = 576 or 1,536, 2 threads) and, with
    MKL here, bit for bit the same numbers."""
    x = x.float()
    K = x.shape[1]
    out, step = torch.empty(K, K), -(-K // 4)
    for i in range(0, K, step):
        out[i:i + step, i:] = x[:, i:i + step].T @ x[:, i:]
        out[i + step:, i:i + step] = out[i:i + step, i + step:].T
    return out


def linears(block: nn.Module, names: Sequence[str]) -> list[nn.Linear]:
    return [block.get_submodule(n) for n in names]
