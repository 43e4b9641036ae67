"""实践 (c) — 大家真正在用的格式：llama.cpp 的块格式、MXFP4、NVFP4，逐字节一致 / GGUF block formats, byte for byte.

学员多半通过 llama.cpp / ollama（GGUF 文件）运行量化模型，2025–26 年的新卡又带来微缩放格式 MXFP4、NVFP4。
每种格式把张量沿最后一维切成 B 个值一块，每块存成固定的字节（fp16 都是小端）；(rows, K) → (rows, K/B·字节数)
的 uint8，块按顺序排。按下面的顺序用 float32 计算，字节就和 gguf-py（gguf.quants.quantize）完全一样。
Learners run quantized models mostly through llama.cpp (GGUF files). A tensor (rows, K) becomes (rows, K/B · bytes)
uint8, its blocks of B values in order; computed in float32 in exactly this order, the bytes equal gguf-py's.

    Q8_0   B = 32, 34 字节 / bytes: d fp16 | q int8 × 32     d = max|x| / 127;  q = round_half_away(x · (1/d))
    Q4_0   B = 32, 18 字节 / bytes: d fp16 | 16 字节半字节码  d = x★ / −8，x★ 是 |x| 最大的那个值（保留符号，
                                                              并列取第一个）/ the value of largest |x|, sign kept;
                                                              q = min(15, trunc(x · (1/d) + 8.5));  x̂ = (q − 8)·d
    Q4_1   B = 32, 20 字节 / bytes: d fp16 | m fp16 | 码      d = (max − min) / 15，m = min;
                                                              q = min(15, trunc((x − min) · (1/d) + 0.5));  x̂ = q·d + m
    MXFP4  B = 32, 17 字节 / bytes: e (E8M0) | 码             e = floor(log2(max|x|)) − 2 + 127（全 0 的块 e = 0；
                                                              torch.log2 用 float32，结果限制在 0..254）；
                                                              每个值取离它最近的 E2M1 值 / the nearest E2M1 value
    NVFP4  B = 64, 36 字节 / bytes: 4 × UE4M3 | 4 × 8 字节码  四个 16 值的子块，各有一个 FP8 E4M3 scale
    1/d 不是有限数（d = 0 或极小）时取 0（这样的块存 0）/ 1/d is 0 where it is not finite (d = 0 or tiny).
    所有的 d、m、1/d 都先用 float32 算，最后才存成 fp16 / d, m and 1/d are float32 until d and m are stored as fp16.
    半字节码 / nibbles: 32 个值的块里第 j 个字节 = 码 j（低 4 位）| 码 j + 16（高 4 位）；NVFP4 每个 16 值子块 8 个
    字节，第 j 个字节 = 码 j | 码 j + 8 << 4 / byte j holds code j low and code j + 16 (NVFP4: j + 8) high.

E2M1（FP4：1 符号位、2 指数位、1 尾数位）的值是 ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}；码 c = 符号·8 + 下标，
值 = E2M1_DOUBLED[c] / 2。和 llama.cpp 一样用“加倍”的整数表、把 scale 减半：MXFP4 的 scale 是 2^(e − 128)，
NVFP4 的是 E4M3(字节) / 2。离得一样近时取表里靠前的码（更靠近 0 的那个）/ ties go to the first code in the table.
    MXFP4 的 2^(e − 128) 按 llama.cpp 的写法从比特拼出来：e < 2 时 bits = 0x00200000 << e（次正规数），否则
    bits = (e − 1) << 23，再当 float32 读 / built from bits: e < 2 → 0x00200000 << e, else (e − 1) << 23.
    NVFP4: tensor_scale = max|x| / (6 · 448)（全 0 时为 1.0），每个子块 scale = 子块 max|x| / (6 · tensor_scale)
    （≤ 448）用 torch.float8_e4m3fn 舍入（最近偶数）存字节；码 = 离 x / tensor_scale 最近的 (scale/2)·E2M1_DOUBLED。
    读 scale 字节时最高位不用（当 0），0x7F 读作 0 / reading a scale byte: the top bit is unused, 0x7F reads 0.
    dequantize_nvfp4(data, tensor_scale) = 解码值 × tensor_scale / the decoded values times tensor_scale.

quantize_q8_0(x) / quantize_q4_0 / quantize_q4_1 / quantize_mxfp4 → uint8 (..., K/B·字节数)；
quantize_nvfp4(x) → (data, tensor_scale: float)。dequantize_*(data) → float32 (..., K)。
bits_per_weight(fmt): 8·字节数 / B（Q8_0 8.5，Q4_0 4.5，Q4_1 5.0，MXFP4 4.25，NVFP4 4.5）；fmt 是 BLOCKS 的键。
round_half_away(v): 四舍五入、.5 远离 0，且精确：a = |v|, floor(a) + floor(2·(a − floor(a)))，再乘 sign(v)
    （floor(a + 0.5) 在 float32 里会把 0.49999997 进成 1）/ exact halves-away rounding.

为什么真实模型的权重重新量化成 Q4_1 会得到原样的字节：它们本来就在 Q4_1 的网格 m + q·d 上；块里用到了码 0 和
15 时，min = m、max = m + 15·d 原样回来（实测：每一块都逐字节相同）/ the shipped weights already sit on that grid.

坏输入 / bad input: x 不是浮点张量 → TypeError; x 为空、含 NaN/inf（消息含 "NaN"）、最后一维不是 B 的倍数 →
    ValueError; data 不是 uint8 → TypeError; data 的最后一维不是每块字节数的倍数 → ValueError; fmt 不认识 →
    ValueError. 错误信息写明参数名 / every message names the argument.

答案规则 / answer rules (python -m kata rules ex5_12):
    不能用 / may not use: gguf, kata.gguf_export, kata.smollm2
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex5_12
"""

from __future__ import annotations

import torch

BLOCKS = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20), "MXFP4": (32, 17), "NVFP4": (64, 36)}  # (B, bytes)
E2M1_DOUBLED = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)  # 2 × the E2M1 value of each code
E4M3_MAX = 448.0  # FP8 E4M3 最大的有限值 / the largest finite FP8 E4M3 value
E2M1_MAX = 6.0


def bits_per_weight(fmt: str) -> float:
    """每个权重的比特数 / bits per weight of a format."""
    raise NotImplementedError("5.12: bits_per_weight — 提示 / hint: python -m kata hint ex5_12")


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """四舍五入、.5 远离 0 / round to nearest, halves away from zero, exactly."""
    raise NotImplementedError("5.12: round_half_away — 提示 / hint: python -m kata hint ex5_12")


def quantize_q8_0(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → Q8_0 字节 / bytes."""
    raise NotImplementedError("5.12: quantize_q8_0 — 提示 / hint: python -m kata hint ex5_12")


def dequantize_q8_0(data: torch.Tensor) -> torch.Tensor:
    """Q8_0 字节 → float32."""
    raise NotImplementedError("5.12: dequantize_q8_0 — 提示 / hint: python -m kata hint ex5_12")


def quantize_q4_0(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → Q4_0 字节 / bytes."""
    raise NotImplementedError("5.12: quantize_q4_0 — 提示 / hint: python -m kata hint ex5_12")


def dequantize_q4_0(data: torch.Tensor) -> torch.Tensor:
    """Q4_0 字节 → float32."""
    raise NotImplementedError("5.12: dequantize_q4_0 — 提示 / hint: python -m kata hint ex5_12")


def quantize_q4_1(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → Q4_1 字节 / bytes."""
    raise NotImplementedError("5.12: quantize_q4_1 — 提示 / hint: python -m kata hint ex5_12")


def dequantize_q4_1(data: torch.Tensor) -> torch.Tensor:
    """Q4_1 字节 → float32."""
    raise NotImplementedError("5.12: dequantize_q4_1 — 提示 / hint: python -m kata hint ex5_12")


def quantize_mxfp4(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → MXFP4 字节 / bytes."""
    raise NotImplementedError("5.12: quantize_mxfp4 — 提示 / hint: python -m kata hint ex5_12")


def dequantize_mxfp4(data: torch.Tensor) -> torch.Tensor:
    """MXFP4 字节 → float32."""
    raise NotImplementedError("5.12: dequantize_mxfp4 — 提示 / hint: python -m kata hint ex5_12")


def quantize_nvfp4(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """x (..., K) → (NVFP4 字节 / bytes, tensor_scale)."""
    raise NotImplementedError("5.12: quantize_nvfp4 — 提示 / hint: python -m kata hint ex5_12")


def dequantize_nvfp4(data: torch.Tensor, tensor_scale: float = 1.0) -> torch.Tensor:
    """NVFP4 字节 → float32，乘 tensor_scale / times tensor_scale."""
    raise NotImplementedError("5.12: dequantize_nvfp4 — 提示 / hint: python -m kata hint ex5_12")
