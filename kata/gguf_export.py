"""Write a model back to a GGUF file that llama.cpp (and kata.smollm2) can read: the source file's metadata and
tokenizer, every linear weight in one of llama.cpp's block formats.

导出 GGUF：元数据和分词器照抄原文件，线性层权重用 llama.cpp 的块格式（gguf-py 的量化，与 5.12 逐字节相同），
norm 用 F32，词嵌入（与 lm_head 共用）保持原文件的格式。先写临时文件，写完再改名：不会留下半个文件。

What rounding a format adds: each block of 32 weights is encoded by llama.cpp's own rule (gguf-py: Q4_1 fits 16
levels to the block's [min, max], Q4_0 and Q8_0 scale by its largest magnitude) and, for a block already on a grid
of its own, by that grid (`grid_blocks`: the smallest gap between its values as the step); the one that reads back
closer is written. So a block on the format's grid comes back unchanged up to the fp16 rounding of d and m: the
shipped model's weights (Q4_1) bit for bit, and every group of a W4 group-32 asymmetric result (RTN, GPTQ, AWQ:
d = s, m = −z·s rounded once to fp16). Measured on SmolLM2, RTN W4 g32 → Q4_1: 38 % of groups bit for bit (their
codes reach 0 and 15, so llama.cpp's rule alone finds the same grid; it would re-fit the others, up to half a step
away), the rest within 4.9e-4 of a group's max |w|; perplexity 42.306 in memory, 42.300 read back (2 windows).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch

from kata.llama import Llama
from kata.smollm2 import _unpermute, gguf_path, state_key

LINEAR_FORMATS = ("Q8_0", "Q4_0", "Q4_1", "F16", "F32")
FILE_TYPES = {"Q8_0": "MOSTLY_Q8_0", "Q4_0": "MOSTLY_Q4_0", "Q4_1": "MOSTLY_Q4_1", "F16": "MOSTLY_F16",
              "F32": "ALL_F32"}


def permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order from the usual one: (heads, 2, hd/2) → (heads, hd/2, 2) (kata.smollm2 undoes it)."""
    return _unpermute(w, n_heads, inverse=True)


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
        data = encode(values, qtype)
        writer.add_tensor(tensor.name, data, raw_dtype=qtype if data.dtype == "uint8" else None)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


GRID_LEVELS = {"Q4_1": (0, 15), "Q4_0": (-8, 7), "Q8_0": (-127, 127)}  # codes each block format can hold
BLOCK = 32


def encode(values: torch.Tensor, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """The bytes of values (rows, cols) in qtype, as gguf-py (llama.cpp's rule) quantizes them, except Q4_1 / Q4_0 /
    Q8_0 blocks that sit on a grid of their own: those take grid_blocks' encoding where it reads back closer (max
    |error| over the block, which must be within the fp16 rounding of d and m: ≤ 2⁻¹⁰ · max |w|)."""
    array = values.numpy()
    data = gguf.quants.quantize(array, qtype)
    if qtype.name not in GRID_LEVELS:
        return data
    ours = grid_blocks(values, qtype.name)
    error = [np.abs(gguf.quants.dequantize(d, qtype) - array).reshape(-1, BLOCK).max(-1) for d in (data, ours)]
    blocks, ours_blocks = data.reshape(len(error[0]), -1), ours.reshape(len(error[0]), -1)
    scale = np.abs(array).reshape(-1, BLOCK).max(-1)
    closer = (error[1] < error[0]) & (error[1] <= 2**-10 * scale)  # ours only where the block is on its grid
    blocks[closer] = ours_blocks[closer]
    return data


def grid_blocks(values: torch.Tensor, fmt: str) -> np.ndarray:
    """values (rows, cols) in fmt's bytes, each block of 32 on the grid it already sits on: the step d is the
    smallest gap between the block's distinct values (at least what its range needs with fmt's codes); Q4_1's
    minimum m is the block's smallest value, codes q = round((w − m) / d); Q4_0 and Q8_0 take q = round(w / d).
    Blocks: Q4_1 = d, m (fp16), 16 bytes of codes; Q4_0 = d, 16 bytes of codes + 8; Q8_0 = d, 32 int8 codes.
    A byte of 4-bit codes holds code j in its low nibble and code j + 16 in its high one (llama.cpp's order)."""
    low_code, high_code = GRID_LEVELS[fmt]
    blocks = values.detach().double().reshape(-1, BLOCK)
    ordered = blocks.sort(-1).values
    low, high = ordered[:, 0], ordered[:, -1]
    gaps = ordered.diff(dim=-1)
    step = torch.where(gaps > 1e-4 * (high - low)[:, None], gaps, torch.inf).amin(-1)
    if fmt == "Q4_1":
        needed = (high - low) / high_code
        origin = low
    else:  # symmetric: the largest magnitude must fit the codes on its side
        needed = torch.maximum(high / high_code, low / low_code)
        origin = torch.zeros_like(low)
    step = torch.where(step.isinf(), needed, step).maximum(needed)
    step = torch.where(step > 0, step, 1.0)  # an all-equal block (all zero for Q4_0 / Q8_0): any step
    codes = torch.round((blocks - origin[:, None]) / step[:, None]).clamp(low_code, high_code)
    scales = [step.numpy().astype("<f2")] + ([low.numpy().astype("<f2")] if fmt == "Q4_1" else [])
    head = np.concatenate([s.view(np.uint8).reshape(-1, 2) for s in scales], axis=1)
    if fmt == "Q8_0":
        body = codes.numpy().astype(np.int8).view(np.uint8)
    else:
        nibbles = (codes - low_code).numpy().astype(np.uint8)
        body = nibbles[:, :16] | (nibbles[:, 16:] << 4)
    return np.concatenate([head, body], axis=1).reshape(values.shape[0], -1)
