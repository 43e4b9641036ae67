"""实践 (c) / 自测题 4.1 问题 2 — W8A8：整数矩阵乘与 SmoothQuant / W8A8 with integer matmuls, and SmoothQuant.

激活里有少数通道数值巨大（4.1 问题 2 量过），权重没有。SmoothQuant 把输入通道 j 除以 s_j、权重第 j 列乘以 s_j，
X·Wᵀ = (X/s)·(W·diag(s))ᵀ，把离群值从激活“搬”到更好量化的权重上 / moves the outliers from the activations
into the weights:
    s_j = max|X_j|^α / max|W_j|^(1−α)          (max|·| 各自先 clamp(min=1e-5) / each clamped at 1e-5)

quantize_activations(x, granularity): 动态对称 INT8（运行时取 scale）/ dynamic symmetric INT8:
    "token": scale = max|x| 每行 / per row (last dim) / 127, 形状 / shape (..., 1)
    "tensor": scale = 整个张量的 max|x| / 127，0 维张量 / a 0-dim tensor for the whole tensor
    q = clamp(round(x / scale), -127, 127) 存为 int8；scale 是 float32，至少 1e-8/127 / at least 1e-8 / 127.
int_mm_runs(device, m, k, n): torch._int_mm 能不能算 (m, k) @ (k, n)：CPU 上任何形状都行；CUDA 要 m > 16 且 k、n 是
    8 的倍数；其他设备不行 / any shape on the CPU; on CUDA m > 16 and k, n multiples of 8; nowhere else.
int8_matmul(a, b): a (M, K) int8 · b (N, K)ᵀ int8 → int32 (M, N)。int_mm_runs 为真时用 torch._int_mm(a, b.T)，
    否则用 int8_matmul_exact：沿 K 切成至多 EMULATION_CHUNK = 1024 的块，每块用 float32 矩阵乘（块内
    |Σ| ≤ 128²·1024 = 2²⁴，float32 精确表示这些整数，−128 也行），块与块用 int32 相加：逐位精确，又有 float32 的速度 /
    else emulate: float32 matmuls over chunks of at most 1024 along K (a chunk's sums stay within 2²⁴, exact in
    float32), the chunks summed in int32 — bit for bit, at float32's speed (float64 would be exact but slow).
W8A8Linear: buffers qweight int8 (out, in)（每输出通道对称 / symmetric per output channel, ±127），
    weight_scale float32 (out,)，bias float32 (out,) 或 None。forward：x 展平成 (M, in)，量化激活，int8_matmul，
    y = acc.float() · scale_x · weight_scale + bias，再转回 x 的 dtype 和形状 / back to x's dtype and shape.
smoothing_scales(act_absmax, weight_absmax, alpha): 上面的 s / the s above.
fold_smoothing(previous, following, s): RMSNorm 的 weight 除以 s（或前一个 Linear 的输出行和偏置除以 s），后面每个
    Linear 的输入列乘以 s；浮点模型的输出不变 / a norm's weight (or a Linear's output rows and bias) divided by s,
    each following Linear's input columns times s: the float model computes the same function.
search_alpha(weights, x, granularity, alphas): 在 alphas 里找让 W8A8 输出误差 Σ_linears mean‖x·Wᵀ − W8A8(x/s)‖²
    最小的 α（共享输入的几个 Linear 一起算）；返回 (α, s) / the α with the least W8A8 output error.
swap_linears(model, granularity, skip): 把名字不含 skip 的 nn.Linear 都换成 W8A8Linear；返回个数
    （可用 kata.llama.replace_linears(model, make, skip) / may call kata.llama.replace_linears）。
smoothquant_model(model, calib_ids, granularity, alphas): 逐块（照 kata/sequential.py 的循环）：
    q/k/v 折进 input_layernorm，gate/up 折进 post_attention_layernorm，down 折进 up_proj（o_proj 不平滑）；
    平滑不改变浮点模型，所以统计量直接来自浮点模型；最后 swap_linears(model.layers, granularity)。
    返回 / returns {"alphas": 每处选中的 α / the α chosen at each place}。

坏输入 / bad input: granularity 不是 "token"/"tensor" → ValueError; alpha 不在 [0, 1] → ValueError;
    act_absmax 与 weight_absmax 形状不同 → ValueError; x 含 NaN → ValueError（消息含 "NaN"）;
    a、b 不是 int8 → TypeError（消息含 "int8"）; 形状不是 (M, K) 与 (N, K) → ValueError（消息含 "shapes"）;
    previous 不是 RMSNorm/Linear → TypeError（消息含收到的类型名，如 "ReLU"）; 模型块里的 norm 不是 RMSNorm →
    TypeError（消息含 "RMSNorm"）/
    messages say "NaN", "int8", "shapes", "RMSNorm".

答案规则 / answer rules: python -m kata rules ex5_7
提示 / hints: python -m kata hint ex5_7
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kata.llama import Llama

GRANULARITIES = ("token", "tensor")
ALPHAS = tuple(i / 10 for i in range(11))  # 0, 0.1, …, 1


def quantize_activations(x: torch.Tensor, granularity: str = "token") -> tuple[torch.Tensor, torch.Tensor]:
    """动态 INT8 激活量化 / dynamic INT8 activations → (q int8, scale float32)."""
    raise NotImplementedError("5.7: quantize_activations — 提示 / hint: python -m kata hint ex5_7")


EMULATION_CHUNK = 1024  # 沿 K 的块长 / chunk length along K: 128²·1024 = 2²⁴


def int_mm_runs(device: torch.device | str, m: int, k: int, n: int) -> bool:
    """torch._int_mm 在这个设备上能不能算 (m, k) @ (k, n) / whether torch._int_mm takes these shapes here."""
    raise NotImplementedError("5.7: int_mm_runs — 提示 / hint: python -m kata hint ex5_7")


def int8_matmul_exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """精确的 int32 模拟 / exact int32 emulation of a · bᵀ."""
    raise NotImplementedError("5.7: int8_matmul_exact — 提示 / hint: python -m kata hint ex5_7")


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) int8 · b (N, K)ᵀ int8 → int32."""
    raise NotImplementedError("5.7: int8_matmul — 提示 / hint: python -m kata hint ex5_7")


class W8A8Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, granularity: str = "token", bias: bool = False) -> None:
        """注册上面列出的 buffer / Register the buffers listed above."""
        super().__init__()
        raise NotImplementedError("5.7: W8A8Linear.__init__ — 提示 / hint: python -m kata hint ex5_7")

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    granularity: str = "token") -> W8A8Linear:
        """量化一个权重矩阵 / Quantize a weight matrix (out, in)."""
        raise NotImplementedError("5.7: W8A8Linear.from_weight — 提示 / hint: python -m kata hint ex5_7")

    @classmethod
    def from_linear(cls, linear: nn.Linear, granularity: str = "token") -> W8A8Linear:
        raise NotImplementedError("5.7: W8A8Linear.from_linear — 提示 / hint: python -m kata hint ex5_7")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("5.7: W8A8Linear.forward — 提示 / hint: python -m kata hint ex5_7")


def smoothing_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^α / max|W_j|^(1−α)."""
    raise NotImplementedError("5.7: smoothing_scales — 提示 / hint: python -m kata hint ex5_7")


def fold_smoothing(previous: nn.Module, following: Sequence[nn.Linear], s: torch.Tensor) -> None:
    """把 1/s 折进 previous，s 折进 following / fold 1/s into previous and s into following."""
    raise NotImplementedError("5.7: fold_smoothing — 提示 / hint: python -m kata hint ex5_7")


def search_alpha(weights: Sequence[torch.Tensor], x: torch.Tensor, granularity: str = "token",
                 alphas: Sequence[float] = ALPHAS) -> tuple[float, torch.Tensor]:
    """W8A8 输出误差最小的 α / the α with the least W8A8 output error → (α, s)."""
    raise NotImplementedError("5.7: search_alpha — 提示 / hint: python -m kata hint ex5_7")


def swap_linears(model: nn.Module, granularity: str = "token", skip: tuple[str, ...] = ("lm_head",)) -> int:
    """就地换成 W8A8Linear，返回个数 / Swap in W8A8Linear in place; return how many."""
    raise NotImplementedError("5.7: swap_linears — 提示 / hint: python -m kata hint ex5_7")


def smoothquant_model(model: Llama, calib_ids: torch.Tensor, granularity: str = "token",
                      alphas: Sequence[float] = ALPHAS) -> dict[str, list[float]]:
    """逐块平滑再换成 W8A8 / Smooth block by block, then swap in W8A8 (see above)."""
    raise NotImplementedError("5.7: smoothquant_model — 提示 / hint: python -m kata hint ex5_7")
