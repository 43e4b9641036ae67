"""实践 (a) — 两个 INT4 装进一个字节，实测字节数，torch 的 CPU INT4 格式 / INT4 packing and real bytes.

一个 int8 只存一个 INT4 值时什么也没省下。打包：沿最后一维，偶数位放低 4 位，奇数位放高 4 位 /
One INT4 value per int8 saves nothing. Pack along the last dim, even index in the low nibble:
    byte[i] = (q[2i] & 0xF) | ((q[2i+1] & 0xF) << 4)
例 / e.g. signed q = [1, -2] → nibbles 0x1, 0xE → byte 0xE1 = 225;   unpack: nibble ≥ 8 → nibble - 16.
输入 q: int8 视为有符号 [-8, 7]，uint8 视为无符号 [0, 15] / int8 means signed, uint8 unsigned.
最后一维为奇数 → ValueError（信息含 "even"）；值越界 → ValueError（信息含 "range"）；dtype 不对 → TypeError（写明 q）/
an odd last dim → ValueError saying "even"; values outside INT4 → ValueError saying "range"; a wrong dtype →
TypeError naming q.

measure_weight_bytes: 同一个权重三种存法的真实 nbytes / the real nbytes of one weight stored three ways:
    "fp16": w 存成 float16；"int8": 每通道 int8 码 + fp16 scale；
    "int4": 每组打包的 INT4 码 + fp16 scale + uint8 zero point
quantize(w, num_bits, group_size) → (codes, scale, zero_point) 由调用者提供（group_size=None 表示每通道）/
is given to you (group_size=None means per channel). 它返回的码可能是 int64：计字节前按上面的存法转成 int8 /
打包的 uint8，scale 转 float16，zero point 转 uint8 / its codes may come back as int64: convert them to the
storage above (int8, packed uint8, fp16 scales, uint8 zero points) before counting. 应与 1.1 的有效比特公式
一致 / should match 1.1's formula.

torch 的 CPU INT4 格式 / torch's CPU INT4 format (torch._weight_int4pack_mm_for_cpu):
    packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)     q: [0, 15] 的无符号码，任意整数
                                                                              dtype / unsigned codes, any int dtype
    scales_and_zeros: 形状 (in / group_size, out, 2)，[..., 0] = scale，[..., 1] = zero，其中
    torch 反量化为 ŵ = (q - 8)·scale + zero / torch dequantizes as ŵ = (q - 8)·scale + zero.
    你的是 ŵ = (q - zero_point)·scale，所以 zero = ? / yours is (q - zero_point)·scale, so zero = ?

坏输入 / bad input: pack_int4 的最后一维不是偶数 → ValueError（消息含 "even"）; 码超出 int4 → ValueError（消息含
"range"）; q 不是 int8 / uint8 → TypeError; unpack_int4 的 packed 不是 uint8 → TypeError; measure_weight_bytes 的 w
含 NaN 或为空 → ValueError，不是浮点 → TypeError. 错误信息写明参数名 / every message names the argument.

答案规则 / answer rules (python -m kata rules ex5_2):
    不能用 / may not use: kata.oracles, kata.gguf_export, numpy.packbits
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex5_2
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(..., n) int8/uint8 → (..., n/2) uint8."""
    raise NotImplementedError("5.2: pack_int4 — 提示 / hint: python -m kata hint ex5_2")


def unpack_int4(packed: torch.Tensor, *, signed: bool) -> torch.Tensor:
    """(..., n/2) uint8 → (..., n): int8 if signed, uint8 if not."""
    raise NotImplementedError("5.2: unpack_int4 — 提示 / hint: python -m kata hint ex5_2")


def measure_weight_bytes(w: torch.Tensor, quantize: Callable, group_size: int = 64) -> dict[str, int]:
    """返回 / Returns {"fp16": bytes, "int8": bytes, "int4": bytes}."""
    raise NotImplementedError("5.2: measure_weight_bytes — 提示 / hint: python -m kata hint ex5_2")


def to_torch_int4_cpu(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                      group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q (out, in) 无符号码，scale / zero_point (out, in/group_size) → (packed, scales_and_zeros)."""
    raise NotImplementedError("5.2: to_torch_int4_cpu — 提示 / hint: python -m kata hint ex5_2")


def int4_matmul_cpu(x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor,
                    group_size: int) -> torch.Tensor:
    """y = x · ŵᵀ，用 torch._weight_int4pack_mm_for_cpu（scales_and_zeros 转成 x 的 dtype）/ with torch's kernel."""
    raise NotImplementedError("5.2: int4_matmul_cpu — 提示 / hint: python -m kata hint ex5_2")
