"""The peers the 5.10 kernel is timed beside, built from the same 5.3 buffers: torch's tinygemm and GemLite.

同一组 5.3 buffer 转成 tinygemm 和 GemLite 的布局，与 5.10 内核同一个计时器并排测。
5.3's W4 buffers: qweight uint8 (N, K/2), code of even k in the low nibble; scale fp16 (N, G); zero_point uint8
(N, G); ŵ = (q − z)·s. tinygemm (torch._weight_int4pack_mm, CUDA compute capability ≥ 8.0) and GemLite (Triton
kernels, `pip install -e ".[peers]"`) each get that ŵ in their own packing; tests/test_peers.py checks
that each gives the product of the dequantized weight.
"""

from __future__ import annotations

import importlib.metadata

import torch

GROUP = 64  # the kata's W4 group size


def unpack_codes(qweight: torch.Tensor) -> torch.Tensor:
    """5.3's packed uint8 (N, K/2) → codes (N, K) uint8, the low nibble first."""
    return torch.stack((qweight & 0xF, qweight >> 4), dim=-1).flatten(-2)


def tinygemm_operands(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's CUDA INT4 (tinygemm) layout: uint8 codes, even column high; ŵ = (q − 8)·s + (8 − zp)·s.
    tinygemm wants K a multiple of 16 · inner_k_tiles: 8 tiles where K allows, fewer for SmolLM2's 576."""
    codes = ((q[:, 0::2] << 4) | q[:, 1::2]).to(torch.uint8)
    tiles = next(t for t in (8, 4, 2) if q.shape[1] % (32 * t) == 0)
    packed = torch._convert_weight_to_int4pack(codes, tiles)
    scale = scale.float()
    zeros = (8 - zero.float()) * scale
    return packed, torch.stack((scale, zeros), -1).transpose(0, 1).contiguous().to(torch.bfloat16)


class Tinygemm(torch.nn.Module):
    """torch's CUDA INT4 kernel on a 5.3 QuantLinear's W4 buffers (bf16 activations)."""

    traceable = True  # an aten op: torch.compile traces it (kata.static_decode leaves it in the compiled graph)

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        packed, scales_and_zeros = tinygemm_operands(unpack_codes(layer.qweight), layer.scale, layer.zero_point)
        self.register_buffer("packed", packed)  # buffers: bytes_per_step counts what the step reads
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.out_features = layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch._weight_int4pack_mm(x.reshape(-1, x.shape[-1]), self.packed, GROUP, self.scales_and_zeros)
        return y.reshape(*x.shape[:-1], self.out_features)


def gemlite_linear(qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.nn.Module:
    """A GemLite W4 layer (fp16 in and out) holding 5.3's ŵ = (q − z)·s: GemLite takes the codes unpacked
    (N, K) uint8 and scales / zeros (N, G); it packs 8 codes along K into an int32 itself and stores −z·s so that
    its kernels compute q·s + (−z·s) with one fused multiply-add."""
    from gemlite import DType, GemLiteLinearTriton

    n, k = qweight.shape[0], qweight.shape[1] * 2
    layer = GemLiteLinearTriton(W_nbits=4, group_size=GROUP, in_features=k, out_features=n,
                                input_dtype=DType.FP16, output_dtype=DType.FP16)
    layer.pack(unpack_codes(qweight), scale.half(), zero.half(), bias=None)
    return layer


def gemlite_tuned(m: int, n: int, k: int) -> bool:
    """Whether GemLite ships a tuned launch for this card and problem (its configs/<card>.json); without one it
    autotunes on the first call, minutes for a whole benchmark, so the benchmark leaves such a row out."""
    from gemlite import core
    from gemlite.triton_kernels import utils

    kernel = core.get_matmul_type(m, 4)
    key = str((utils.get_closest_m(m), n, k, GROUP, 8, 100 * core.DType.FP16.value + 4))
    return key in core.GEMLITE_TRITON_CONFIG_CACHE.get(kernel, {})


def versions() -> dict:
    """The peers' versions, recorded with every result (None where absent)."""
    found = {}
    for name in ("gemlite",):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found
