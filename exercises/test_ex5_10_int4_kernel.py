"""Tests for practice (c) — the fused W4A16 / W8A16 Triton kernel. 测试：融合 INT4 / INT8 内核。

Without a GPU these run in Triton's CPU interpreter (TRITON_INTERPRET=1, set by the kata's pytest plugin):
slow per program, so the shapes are small. 没有 GPU 时在 Triton 的 CPU 解释器里运行。
"""

import pytest
import torch
from torch import nn

pytest.importorskip("triton", reason='5.10 需要 Triton / 5.10 needs Triton: pip install -e ".[kernel]" (Linux)')

from exercises.ex5_10_int4_kernel import KernelLinear, prepare, quantized_matmul, triton_runs, use_kernel
from kata.harness.check import expect_at_most, expect_equal, expect_tensor, expect_tensor_equal, raises
from kata.oracles import dequantize_groups, quantize_groups
from kata.timing import copy_bandwidth, gpu_paths, graph_time_us

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BF16_DOT = DEVICE == "cuda" and gpu_paths().dtype == torch.bfloat16  # bf16 tensor cores (compute capability ≥ 8.0)
SPEED_SHAPE = (4096, 4096) if DEVICE == "cuda" else (256, 512)  # (N, K): a Llama-3-8B q/o projection on a GPU


class Quantized(nn.Module):
    """5.3's QuantLinear buffers (and nothing the answer could use as the weight), built here from kata.oracles so
    that 5.10 is graded without 5.3; its forward is the readable dequantize path, the oracle."""

    def __init__(self, out_features: int, in_features: int, num_bits: int, group_size: int | None, seed: int = 0,
                 bias: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(out_features, in_features, generator=g) * 0.02
        symmetric = num_bits == 8
        q, scale, zero = quantize_groups(w, num_bits, group_size, symmetric=symmetric)
        self.num_bits, self.group_size = num_bits, group_size
        if num_bits == 8:
            self.register_buffer("qweight", q.to(torch.int8))
        else:
            self.register_buffer("qweight", (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8))
            self.register_buffer("zero_point", zero.to(torch.uint8))
        self.register_buffer("scale", scale.half())
        self.register_buffer("bias", torch.randn(out_features, generator=g).half() if bias else None)

    def forward(self, x):
        y = x @ oracle_weight(self).to(x.device, x.dtype).T
        return y if self.bias is None else y + self.bias.to(y.dtype)


def oracle_codes(layer: Quantized) -> torch.Tensor:
    """The layer's codes (out, in) as int64, unpacked from its buffers (the low nibble is the even column)."""
    q = layer.qweight.cpu()
    if layer.num_bits == 8:
        return q.long()
    return torch.stack((q & 0xF, q >> 4), dim=-1).flatten(-2).long()


def oracle_weight(layer: Quantized) -> torch.Tensor:
    """ŵ (out, in) float32 from the layer's buffers: the oracle every kernel result is held against."""
    if layer.num_bits == 8:
        zero = torch.zeros(layer.scale.shape, dtype=torch.long)
    else:
        zero = layer.zero_point.cpu().long()
    return dequantize_groups(oracle_codes(layer), layer.scale.cpu().float(), zero)


def on_device(layer: Quantized):
    """prepare() of the layer's buffers, moved to DEVICE first (the kernel's weights live where x does)."""
    zero_point = None if layer.num_bits == 8 else layer.zero_point.to(DEVICE)
    return prepare(layer.qweight.to(DEVICE), layer.scale.to(DEVICE), zero_point, layer.num_bits, layer.group_size)


def inputs(m: int, k: int, seed: int = 1, dtype=torch.float16) -> torch.Tensor:
    return torch.randn(m, k, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype)


def relative_error(got, expected) -> float:
    return ((got.float() - expected).norm() / expected.norm()).item()


def test_prepare_packs_eight_codes_per_int32_word_along_k():
    layer = Quantized(72, 128, 4, 32)
    weights = prepare(layer.qweight, layer.scale, layer.zero_point, 4, 32)
    expect_tensor(weights.qweight, "qweight", shape=(16, 72), dtype=torch.int32)
    words = weights.qweight.cpu().long() & 0xFFFFFFFF
    decoded = torch.stack([(words >> (4 * i)) & 0xF for i in range(8)], dim=1).reshape(128, 72)  # (K, N)
    expect_tensor_equal(decoded, oracle_codes(layer).T, "codes decoded from the words (k = 8·word + nibble)")
    expect_tensor(weights.scales, "scales", shape=(4, 72), dtype=torch.float16)
    expect_tensor_equal(weights.zeros.float(), layer.zero_point.T.float(), "zero points (groups, N)")


def test_prepare_lays_int8_codes_out_n_contiguous():
    layer = Quantized(72, 128, 8, None)
    weights = prepare(layer.qweight, layer.scale, None, 8, None)
    expect_tensor(weights.qweight, "qweight", shape=(128, 72), dtype=torch.int8)
    expect_tensor_equal(weights.qweight.cpu(), layer.qweight.T, "int8 codes (K, N)")
    expect_tensor(weights.scales, "scales", shape=(1, 72), dtype=torch.float16)
    expect_tensor_equal(weights.scales, layer.scale.reshape(1, 72), "scales (one group, N)")
    expect_tensor(weights.zeros, "zeros", shape=(1, 72), dtype=torch.float16)
    expect_equal(int(weights.zeros.count_nonzero()), 0, "non-zero zero points of a symmetric W8")
    expect_equal((weights.num_bits, weights.group_size), (8, 128), "(num_bits, group_size) of W8")


@pytest.mark.demands("scale and zero_point may arrive as float32", "store them as fp16")
def test_prepare_stores_float32_scales_and_zero_points_as_fp16():
    layer = Quantized(72, 128, 4, 32)
    weights = prepare(layer.qweight, layer.scale.float(), layer.zero_point.float(), 4, 32)
    expect_tensor(weights.scales, "scales", shape=(4, 72), dtype=torch.float16)
    expect_tensor(weights.zeros, "zeros", shape=(4, 72), dtype=torch.float16)
    expect_tensor_equal(weights.scales.cpu(), layer.scale.T, "scales (groups, N) from float32")
    expect_tensor_equal(weights.zeros.cpu().float(), layer.zero_point.T.float(), "zero points (groups, N) from float32")


def test_a_word_whose_top_nibble_is_8_or_more_wraps_to_a_negative_int32():
    codes = torch.zeros(3, 16, dtype=torch.uint8)
    codes[:, 7] = torch.tensor([8, 15, 7], dtype=torch.uint8)  # word 0 = code 7 << 28: 2³¹, 15·2²⁸, 7·2²⁸
    qweight = codes[:, 0::2] | (codes[:, 1::2] << 4)
    weights = prepare(qweight, torch.ones(3, 1), torch.zeros(3, 1), 4, 16)
    expect_tensor_equal(weights.qweight[0], torch.tensor([-2**31, 15 * 2**28 - 2**32, 7 * 2**28], dtype=torch.int32),
                        "word 0 of each output (unsigned value − 2³² from 2³¹ on)")


@pytest.mark.bad_input
@pytest.mark.parametrize(("num_bits", "qweight"), [(8, torch.zeros(4, 24, dtype=torch.int8)),
                                                   (4, torch.zeros(4, 3, dtype=torch.uint8))])
def test_prepare_names_in_features_that_do_not_fit_the_layout(num_bits, qweight):
    # W8: K = 24 is not a multiple of 16 (tl.dot's K tile); W4: K = 6 is not a whole number of 8-code words.
    def prepare_codes(codes: torch.Tensor):
        return prepare(codes, torch.ones(4, 1), None if num_bits == 8 else torch.zeros(4, 1), num_bits, 16)

    fits = torch.zeros(4, 2 * num_bits, dtype=qweight.dtype)  # K = 16 fits both layouts
    with raises(ValueError, match=r"\bin_features\b", valid=lambda: prepare_codes(fits)):
        prepare_codes(qweight)


@pytest.mark.parametrize("m", [1, 3, 16, 33])
@pytest.mark.parametrize(("num_bits", "group_size"), [(4, 32), (4, 64), (4, 128), (8, None)])
def test_the_kernel_equals_dequantize_then_matmul(m, num_bits, group_size):
    layer = Quantized(72, 256, num_bits, group_size)  # N = 72: not a multiple of the block width
    weights = on_device(layer)
    x = inputs(m, 256)
    got = quantized_matmul(x, weights)
    expect_tensor(got, "y", shape=(m, 72), dtype=torch.float16)
    expected = x.float().cpu() @ oracle_weight(layer).T
    # fp16 inputs, fp32 accumulation; ŵ rounded to fp16 before tl.dot (2⁻¹¹ relative) and y to fp16 at the end:
    # 0.2 % of the output norm is a few times that rounding, far below any wrong code, scale or zero (> 5 %).
    expect_at_most(relative_error(got.cpu(), expected), 2e-3, f"M={m} W{num_bits} g{group_size} relative error")


@pytest.mark.parametrize("leading", [
    (1, 3),  # 3 rows: the GEMV kernel
    pytest.param((2, 3), marks=pytest.mark.skipif(
        not BF16_DOT, reason="Triton 的 CPU 解释器算错 bf16 的 tl.dot（triton 3.9），计算能力 < 8.0 的 GPU（或 "
                             "KATA_GPU=sm75）没有 bf16 张量核：只在有的 GPU 上检查 / Triton's CPU interpreter gets "
                             "bf16 tl.dot wrong (triton 3.9) and a GPU below compute capability 8.0 (or "
                             "KATA_GPU=sm75) has no bf16 tensor cores: checked on a GPU that has them")),
])
def test_leading_dimensions_and_bf16_are_kept(leading):
    layer = Quantized(64, 128, 4, 64)
    weights = on_device(layer)
    x = inputs(leading[0] * leading[1], 128, dtype=torch.bfloat16).reshape(*leading, 128)
    got = quantized_matmul(x, weights)
    expect_tensor(got, "y", shape=(*leading, 64), dtype=torch.bfloat16)
    # bf16 keeps 8 significant bits (2⁻⁹ relative rounding of x and y): 1 % of the norm.
    expect_at_most(relative_error(got.cpu(), x.float().cpu() @ oracle_weight(layer).T), 1e-2, "bf16 relative error")


@pytest.mark.bad_input
def test_a_float32_input_is_a_type_error():
    weights = on_device(Quantized(64, 128, 4, 64))
    with raises(TypeError, match=r"\bx\b", valid=lambda: quantized_matmul(inputs(1, 128), weights)):
        quantized_matmul(inputs(1, 128, dtype=torch.float32), weights)


@pytest.mark.bad_input
def test_an_input_of_the_wrong_width_is_a_value_error():
    weights = on_device(Quantized(64, 128, 4, 64))
    with raises(ValueError, match=r"\bin_features\b", valid=lambda: quantized_matmul(inputs(1, 128), weights)):
        quantized_matmul(inputs(1, 96), weights)


@pytest.mark.bad_input
def test_an_input_with_no_rows_is_a_value_error():
    weights = on_device(Quantized(64, 128, 4, 64))
    with raises(ValueError, match=r"\brows\b", valid=lambda: quantized_matmul(inputs(1, 128), weights)):
        quantized_matmul(inputs(0, 128), weights)


@pytest.mark.parametrize(("m", "k"), [(1, 64), (20, 64)])
def test_one_program_along_k_stores_without_the_split_path(m, k):
    """K = one chunk (GEMV) or one tl.dot block: nothing to split, the plain store path."""
    layer = Quantized(72, k, 4, 64)
    weights = on_device(layer)
    x = inputs(m, k)
    got = quantized_matmul(x, weights)
    # the same 0.2 % as test_the_kernel_equals_dequantize_then_matmul, for the same reasons
    expected = x.float().cpu() @ oracle_weight(layer).T
    expect_at_most(relative_error(got.cpu(), expected), 2e-3, f"M={m} K={k} relative error")


@pytest.mark.bad_input
def test_prepare_refuses_other_bit_widths_and_groups_that_do_not_divide():
    layer = Quantized(64, 128, 4, 64)
    with raises(ValueError, match=r"\bnum_bits\b",
                valid=lambda: prepare(layer.qweight, layer.scale, layer.zero_point, 4, 64)):
        prepare(layer.qweight, layer.scale, layer.zero_point, 3, 64)
    with raises(ValueError, match=r"\bgroup_size\b",
                valid=lambda: prepare(layer.qweight, layer.scale, layer.zero_point, 4, 64)):
        prepare(layer.qweight, layer.scale, layer.zero_point, 4, 48)


@pytest.mark.parametrize(("dtype", "interpreter", "runs"), [
    (torch.float16, "1", True), (torch.bfloat16, "1", True),  # on the CPU: in Triton's interpreter …
    (torch.float16, "0", False), (torch.float32, "1", False),  # … only, and only for fp16 / bf16 inputs
])
def test_on_the_cpu_triton_runs_in_its_interpreter_for_half_inputs(monkeypatch, dtype, interpreter, runs):
    monkeypatch.setenv("TRITON_INTERPRET", interpreter)
    expect_equal(triton_runs(torch.ones(2, 16, dtype=dtype)), runs, f"triton_runs({dtype}, TRITON_INTERPRET="
                                                                     f"{interpreter})")
    expect_equal(triton_runs(torch.ones(2, 16, dtype=dtype, device="meta")), False, "triton_runs on 'meta'")


@pytest.mark.gpu
def test_on_cuda_triton_runs_for_half_inputs(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    got = [triton_runs(torch.ones(2, 16, dtype=d, device="cuda")) for d in (torch.float16, torch.bfloat16,
                                                                            torch.float32)]
    expect_equal(got, [True, True, False], "triton_runs on CUDA for fp16, bf16, fp32")


@pytest.mark.parametrize(("m", "num_bits", "group_size"), [(1, 4, 64), (20, 4, 64), (1, 8, None)])
def test_quantized_matmul_is_your_fused_kernel_on_the_packed_weights(m, num_bits, group_size):
    """Called twice: the second call is held to the whole rule of "how" (the stub's paragraph on it), allocations
    included; a wrong way fails the call with the rule's words, a right one returns the product."""
    layer = Quantized(256, 512, num_bits, group_size)  # 2·N·K = 256 KiB: far above what a GEMV itself allocates
    weights = on_device(layer)
    x = inputs(m, 512)
    for _ in range(2):
        got = quantized_matmul(x, weights)
    # the same 0.2 % as test_the_kernel_equals_dequantize_then_matmul, for the same reasons
    expect_at_most(relative_error(got.cpu(), x.float().cpu() @ oracle_weight(layer).T), 2e-3, "relative error")


@pytest.mark.demands("an 8-bit layer has no zero_point attribute", "a bias may be float32")
@pytest.mark.parametrize(("num_bits", "group_size", "bias"), [(4, 32, True), (8, None, False)])
def test_kernel_linear_runs_the_kernel_where_triton_runs(calls_to, num_bits, group_size, bias):
    layer = Quantized(64, 128, num_bits, group_size, bias=bias).to(DEVICE)
    if bias:
        layer.bias = layer.bias.float()  # a float32 bias: the output still comes back in x's dtype
    x = inputs(5, 128)
    calls = calls_to(f"{__name__}.Quantized.forward")
    wrapped = KernelLinear(layer)
    got = wrapped(x)
    expect_equal(len(calls), 0, "calls to the layer's own forward (the kernel should answer)")
    expect_tensor(got, "y", shape=(5, 64), dtype=torch.float16)
    expect_at_most(relative_error(got.cpu(), layer(x).float().cpu()), 2e-3, "KernelLinear against the layer")
    expect_tensor_equal(wrapped(x), got, "a second call (weights prepared once)")


def test_kernel_linear_warns_then_keeps_the_layers_own_forward_for_float32(calls_to):
    layer = Quantized(64, 128, 4, 32, bias=True).to(DEVICE)
    x = inputs(5, 128, dtype=torch.float32)
    calls = calls_to(f"{__name__}.Quantized.forward")
    with pytest.warns(UserWarning, match="dequantize"):
        y = KernelLinear(layer)(x)
    expect_equal(len(calls), 1, "calls to the layer's own forward (through KernelLinear)")
    expect_tensor_equal(y, layer(x), "KernelLinear(float32 x)")


def test_use_kernel_wraps_each_quantized_layer_once():
    model = nn.Sequential(Quantized(64, 128, 4, 32), nn.ReLU(), Quantized(32, 64, 8, None))
    expect_equal(use_kernel(model), 2, "layers wrapped")
    expect_equal(use_kernel(model), 0, "layers wrapped the second time")
    expect_equal([type(m).__name__ for m in model], ["KernelLinear", "ReLU", "KernelLinear"], "model")


def bytes_read(weights) -> int:
    """Bytes of the prepared layout a call reads: codes, scales and zero points."""
    return sum(t.numel() * t.element_size() for t in (weights.qweight, weights.scales, weights.zeros))


def gpu_times(layer_bytes: dict[str, int], calls: dict) -> str:
    """Each format's time at the measured copy bandwidth (kata.timing.copy_bandwidth, the benchmark's limit) beside
    its measured device time at M = 1 (a CUDA graph of calls, L2 flushed before each: kata.timing.graph_time_us)."""
    copy = copy_bandwidth()
    cells = [f"{name} {layer_bytes[name] / copy * 1e6:.1f} µs allowed, {graph_time_us(calls[name]):.1f} µs measured"
             for name in calls]
    return f"at the measured copy bandwidth {copy / 1e12:.2f} TB/s: " + ", ".join(cells)


def test_a_call_reads_about_a_quarter_of_fp16s_bytes_at_w4_and_half_at_w8(record_property):
    """Why the kernel is faster at small M: the bytes it must read. On a GPU the test also records the time those
    bytes take at the device's copy bandwidth beside the time measured (the kata prints it at the end)."""
    n, k = SPEED_SHAPE
    w4_layer, w8_layer = Quantized(n, k, 4, 64), Quantized(n, k, 8, None)
    w4, w8 = on_device(w4_layer), on_device(w8_layer)
    sizes = {"fp16": 2 * n * k, "W8": bytes_read(w8), "W4 g64": bytes_read(w4)}
    expect_equal(sizes["W4 g64"], n * k // 2 + 2 * 2 * n * (k // 64), "W4 g64 bytes: codes, fp16 scales and zeros")
    expect_equal(sizes["W8"], n * k + 2 * 2 * n, "W8 bytes: codes, one fp16 scale and zero per output")
    line = (f"5.10 bytes a call reads, {k}→{n} layer: fp16 {sizes['fp16']:,}, W8 {sizes['W8']:,} "
            f"({sizes['fp16'] / sizes['W8']:.2f}× fewer), W4 g64 {sizes['W4 g64']:,} "
            f"({sizes['fp16'] / sizes['W4 g64']:.2f}× fewer)")
    if DEVICE == "cuda":
        x, w16 = inputs(1, k), oracle_weight(w4_layer).to(DEVICE, torch.float16)
        calls = {"fp16": lambda: x @ w16.T, "W8": lambda: quantized_matmul(x, w8),
                 "W4 g64": lambda: quantized_matmul(x, w4)}
        line += "; " + gpu_times(sizes, calls)
    record_property("measured", line)
