"""Write a model back to a GGUF file that llama.cpp (and kata.smollm2) can read: the source file's metadata and
tokenizer, every linear weight in one of llama.cpp's block formats.

导出 GGUF：元数据和分词器照抄原文件，线性层权重用 llama.cpp 的块格式（gguf-py 的量化，与 5.12 逐字节相同），
norm 用 F32，词嵌入（与 lm_head 共用）保持原文件的格式。先写临时文件，写完再改名：不会留下半个文件。

What rounding a format adds: the float weights are quantized again by gguf-py, group by group. A group already on
that format's grid comes back unchanged — the shipped model's weights (Q4_1) bit for bit. A W4 group-32 result
with an integer zero point (RTN, GPTQ, AWQ) is on a Q4_1 grid only where its codes reach both 0 and 15 (38 % of
the groups of an RTN W4 g32 SmolLM2, measured); Q4_1 re-fits every other group to 16 levels over its own range,
at most half a step away (perplexity on 2 windows: 42.31 in memory, 42.29 read back). Writing the codes, scales
and zero points themselves (d = s, m = −z·s) would keep them all, up to fp16: not done here.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import torch

from kata.llama import Llama
from kata.smollm2 import gguf_path, state_key

LINEAR_FORMATS = ("Q8_0", "Q4_0", "Q4_1", "F16", "F32")
FILE_TYPES = {"Q8_0": "MOSTLY_Q8_0", "Q4_0": "MOSTLY_Q4_0", "Q4_1": "MOSTLY_Q4_1", "F16": "MOSTLY_F16",
              "F32": "ALL_F32"}


def permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order from the usual one: (heads, 2, hd/2) → (heads, hd/2, 2) (kata.smollm2 undoes it)."""
    out_features, in_features = w.shape
    return w.reshape(n_heads, 2, out_features // n_heads // 2, in_features).transpose(1, 2).reshape_as(w)


def export_gguf(model: Llama, path: str | Path, fmt: str = "Q4_1", source: str | Path | None = None) -> Path:
    """Write `model` to `path` as GGUF: the metadata, tokenizer and tensor list of `source` (default: the real
    model's file), linear weights in `fmt` (LINEAR_FORMATS), norms F32, the embedding in the source's format.
    Returns the path. A ValueError names `fmt`, or `path` when it is a folder or its folder does not exist."""
    path = Path(path)
    if fmt not in LINEAR_FORMATS:
        raise ValueError(f"fmt 只能是 / fmt must be one of {LINEAR_FORMATS}, got {fmt!r}")
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"path 必须是已有目录里的文件名 / path must name a file in an existing folder, got {path}")
    reader = gguf.GGUFReader(source or gguf_path())
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    cfg = model.cfg
    partial = path.with_name(path.name + ".partial")
    try:
        _write(reader, state, cfg, fmt, partial)
    except BaseException:
        partial.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    partial.replace(path)  # only a whole file ever has the name asked for
    return path


def _write(reader: gguf.GGUFReader, state: dict[str, torch.Tensor], cfg, fmt: str, partial: Path) -> None:
    """The whole file at `partial`: metadata first, then every tensor of the source in its order."""
    writer = gguf.GGUFWriter(partial, arch=reader.fields["general.architecture"].contents())
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # the writer adds these itself
        value = field.contents()
        if field.name == "general.file_type":
            value = int(gguf.LlamaFileType[FILE_TYPES[fmt]])
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, field.types[0], sub_type=sub_type)
    for tensor in reader.tensors:  # the source's tensors, names and order
        values = state[state_key(tensor.name)]
        kind = tensor.name.split(".")[-2]
        if kind == "attn_q":
            values = permute(values, cfg.num_heads)
        elif kind == "attn_k":
            values = permute(values, cfg.num_kv_heads)
        if "norm" in kind:
            qtype = gguf.GGMLQuantizationType.F32
        elif tensor.name.startswith("blk."):
            qtype = gguf.GGMLQuantizationType[fmt]
        else:  # the embedding (and lm_head where it is its own tensor) as the source stores it
            qtype = tensor.tensor_type
        data = gguf.quants.quantize(values.numpy(), qtype)
        writer.add_tensor(tensor.name, data, raw_dtype=qtype if data.dtype == "uint8" else None)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
