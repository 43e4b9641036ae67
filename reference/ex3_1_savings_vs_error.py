"""3.1 · TODO 3 — memory saving next to measured error (solution). 显存节省 vs 误差（参考答案）。"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kata.validate import check_float_tensor, check_num_bits


def savings_vs_error(x: torch.Tensor, quantize: Callable, dequantize: Callable, error: Callable,
                     bit_widths: Sequence[int] = (8, 4)) -> list[dict]:
    """Rows fp16, int{b}...: bits, memory_saving = 1 - bits/16, and the measured mse / sqnr_db."""
    check_float_tensor(x, "x", allow_empty=False)
    for bits in bit_widths:
        check_num_bits(bits, name="bit_widths")
    # FP16 is lossy too: its round trip is the baseline every integer format is compared with.
    candidates = [("fp16", 16, x.to(torch.float16).to(x.dtype))]
    candidates += [(f"int{bits}", bits, dequantize(*quantize(x, bits))) for bits in bit_widths]
    rows = []
    for name, bits, x_hat in candidates:
        measured = error(x, x_hat)
        rows.append({"format": name, "bits": bits, "memory_saving": 1 - bits / 16,
                     "mse": measured["mse"], "sqnr_db": measured["sqnr_db"]})
    return rows
