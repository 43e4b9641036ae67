"""A small, readable Llama (RMSNorm, RoPE, grouped-query attention, SwiGLU), the shape of SmolLM2.

一个简洁的 Llama 实现，供测试（随机初始化的小模型）和真实模型（SmolLM2-135M）共用。
Module names follow Hugging Face's (`layers.0.self_attn.q_proj`) so checkpoints map one to one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LlamaConfig:
    vocab_size: int = 49152  # SmolLM2's defaults
    hidden_size: int = 576
    intermediate_size: int = 1536  # SwiGLU width
    num_layers: int = 30
    num_heads: int = 9  # query heads
    num_kv_heads: int = 3  # key/value heads, shared by num_heads / num_kv_heads query heads each
    rope_theta: float = 100000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True  # lm_head reuses the embedding matrix

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def tiny(cls) -> LlamaConfig:
        """Same structure, a few thousand times smaller: for fast unit tests."""
        return cls(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim) for rotate-half RoPE: frequency i pairs dims i and i + head_dim/2."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(seq_len).float(), inv_freq)  # (T, hd/2)
    angles = torch.cat((angles, angles), dim=-1)  # (T, hd)
    return angles.cos(), angles.sin()


class KVCache:
    """Keys and values of the tokens seen so far, per layer, so that decoding one more token costs one token's
    work: (layers, B, kv_heads, max_len, head_dim) each, filled left to right.

    增量解码的 K/V 缓存：已处理的 token 的键和值，新 token 只算自己那一份。"""

    def __init__(self, cfg: LlamaConfig, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0  # tokens already cached (the position of the next one)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, kv_heads, T, head_dim) after the cached ones; return all of them so far."""
        end = self.length + k.shape[2]
        if end > self.keys.shape[3]:
            raise ValueError(f"KV 缓存已满 / KV cache full: {end} tokens > max_len {self.keys.shape[3]}")
        self.keys[layer, :, :, self.length:end] = k
        self.values[layer, :, :, self.length:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: int = 0) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * hd, cfg.hidden_size, bias=False)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q (B, nh, T, hd), k and v (B, nkv, T, hd) of x (B, T, hidden); RoPE's cos / sin rows applied to q, k."""
        return self.heads(self.q_proj(x), self.k_proj(x), self.v_proj(x), cos, sin)

    def heads(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
              sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The projections' outputs (B, T, width) as heads: q (B, nh, T, hd), k and v (B, nkv, T, hd), RoPE on q, k."""
        B, T, _ = q.shape
        cfg, hd = self.cfg, self.cfg.head_dim
        q = q.view(B, T, cfg.num_heads, hd).transpose(1, 2)
        k = k.view(B, T, cfg.num_kv_heads, hd).transpose(1, 2)
        v = v.view(B, T, cfg.num_kv_heads, hd).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **sdpa: object) -> torch.Tensor:
        """Attention of q (B, nh, T, hd) over k, v (B, nkv, S, hd), projected back to (B, T, hidden); sdpa goes to
        F.scaled_dot_product_attention (is_causal or attn_mask)."""
        return self.o_proj(self.mix(q, k, v, **sdpa))

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **sdpa: object) -> torch.Tensor:
        """attend before o_proj: the heads' outputs side by side, (B, T, nh·hd)."""
        B, nh, T, hd = q.shape
        nkv = k.shape[1]  # grouped-query attention: query head h reads K/V head h // (nh / nkv)
        k, v = k.to(q.dtype), v.to(q.dtype)
        if T == 1:  # one query per head (decode): a K/V head's query heads become the rows of one query block,
            y = F.scaled_dot_product_attention(q.reshape(B, nkv, nh // nkv, hd), k, v, **sdpa)  # K/V not copied
        else:
            k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, **sdpa).transpose(1, 2)
        return y.reshape(B, T, nh * hd)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, hidden) at positions cache.length … + T - 1 (0 … T - 1 without a cache)."""
        T = x.shape[1]
        q, k, v = self.project(x, cos, sin)
        past = 0 if cache is None else cache.length
        if cache is not None:
            k, v = cache.append(self.layer, k.to(cache.keys.dtype), v.to(cache.values.dtype))  # (B, nkv, S, hd)
        if past == 0 or T == 1:  # no earlier tokens, or one new token that may see every key
            return self.attend(q, k, v, is_causal=past == 0 and T > 1)
        # new token i (absolute position past + i) sees keys 0 … past + i
        return self.attend(q, k, v, attn_mask=torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # SwiGLU


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: int = 0) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def hidden_states(self, ids: torch.Tensor, upto: int | None = None,
                      cache: KVCache | None = None) -> torch.Tensor:
        """The residual stream after `upto` blocks (all of them by default): (B, T, hidden).
        With a cache, ids are the tokens after the cached ones; their keys and values are added to it."""
        past = 0 if cache is None else cache.length
        cos, sin = rope_tables(self.cfg.head_dim, past + ids.shape[1], self.cfg.rope_theta)
        x = self.embed_tokens(ids)
        cos, sin = cos[past:].to(x.device, x.dtype), sin[past:].to(x.device, x.dtype)
        for block in self.layers[:upto]:
            x = block(x, cos, sin, cache)
        if cache is not None:
            cache.length += ids.shape[1]
        return x

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) → next-token logits (B, T, vocab). With a KVCache: prefill with the prompt, then
        call again with each new token; the logits equal those of the full forward over all tokens so far."""
        return self.lm_head(self.norm(self.hidden_states(ids, cache=cache)))


def tiny_llama(seed: int = 0) -> Llama:
    """A randomly initialised tiny Llama (std 0.02 weights, as at the start of training), in eval mode."""
    torch.manual_seed(seed)
    model = Llama(LlamaConfig.tiny())
    for name, param in model.named_parameters():
        if "norm" not in name:
            nn.init.normal_(param, std=0.02)
    return model.eval()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every distinct parameter and buffer (a tied matrix counts once)."""
    seen, total = set(), 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.nbytes
    return total




def replace_modules(model: nn.Module, matches: Callable[[str, nn.Module], bool],
                    make: Callable[[nn.Module], nn.Module]) -> int:
    """Swap every submodule for which matches(name, module) holds for make(module), in place; returns how many.
    (5.3's quantize_model teaches this; later exercises may call it.)"""
    targets = [(name, module) for name, module in model.named_modules() if name and matches(name, module)]
    for name, module in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, make(module))
    return len(targets)


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module],
                    skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Swap every nn.Linear whose name contains none of `skip` for make(linear), in place; returns how many."""
    return replace_modules(model, lambda name, m: isinstance(m, nn.Linear) and not any(s in name for s in skip),
                           make)


def linear_weight_bytes(model: nn.Module) -> int:
    """Measured bytes of every block linear (q/k/v/o, gate/up/down: names ending in _proj), whatever its class."""
    return sum(weight_bytes(m) for name, m in model.named_modules() if name.endswith("_proj"))


def cast_floats(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the float parameters (embeddings, norms, lm_head, float linears) to dtype, in place; buffers
    (codes, scales) keep the dtypes their format chose."""
    for param in model.parameters():
        param.data = param.data.to(dtype)
    return model
