"""The peers compute the product of the same dequantized weight as the 5.10 kernel does.

对照组（tinygemm、GemLite）从同一组 5.3 buffer 转换后，算出的乘积与反量化权重的乘积一致。
"""

import pytest
import torch

from kata.harness.check import expect_at_most
from kata.oracles import dequantize_groups
from kata.timing import gpu_paths
from tests.benchmarks.peers import GROUP, gemlite_linear, tinygemm_operands, unpack_codes
from tests.benchmarks.test_kernel_speed import w4_buffers

pytestmark = pytest.mark.gpu


def weights_and_input(n: int = 4096, k: int = 4096, m: int = 1):
    """A Llama-3-8B q/o shape at M = 1: GemLite ships a tuned launch for it on an H100 (no minutes of autotuning)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(n, k, device="cuda", generator=g) * 0.02
    qweight, scale, zero, _ = w4_buffers(w)
    w_hat = dequantize_groups(unpack_codes(qweight).long(), scale.float(), zero.long())  # 5.3's ŵ, float32
    return qweight, scale, zero, w_hat, torch.randn(m, k, device="cuda", generator=g).half()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.float() - expected).norm() / expected.norm()).item()


def test_tinygemm_on_the_converted_buffers_gives_the_dequantized_product():
    if not gpu_paths().tinygemm:
        pytest.skip(f"没有 tinygemm / no tinygemm here: {gpu_paths().why}")
    qweight, scale, zero, w_hat, x = weights_and_input()
    packed, scales_and_zeros = tinygemm_operands(unpack_codes(qweight), scale, zero)
    got = torch._weight_int4pack_mm(x.bfloat16(), packed, GROUP, scales_and_zeros)
    # bf16 activations and scales (8 significant bits): 1 % of the output norm.
    expect_at_most(relative_error(got, x.float() @ w_hat.T), 1e-2, "tinygemm against x · ŵᵀ")


def test_gemlite_on_the_converted_buffers_gives_the_dequantized_product():
    pytest.importorskip("gemlite", reason='GemLite 未安装 / GemLite absent: pip install -e ".[peers]"')
    qweight, scale, zero, w_hat, x = weights_and_input()
    got = gemlite_linear(qweight, scale, zero)(x)
    # fp16 activations, −z·s stored in fp16 (2⁻¹¹ relative), fp32 accumulation: 0.5 % of the output norm.
    expect_at_most(relative_error(got, x.float() @ w_hat.T), 5e-3, "GemLite against x · ŵᵀ")
