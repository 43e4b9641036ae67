"""Tests for practice (c) — GGUF block formats, MXFP4 and NVFP4 against llama.cpp's own Python (gguf-py).

测试：每种格式的字节与 gguf.quants.quantize 完全相同（gguf 能量化的格式），反量化与 gguf.quants.dequantize
完全相同（五种都是）；真实模型的 Q4_1 / Q8_0 权重重新量化得到原样的字节。
"""

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize
from hypothesis import given
from hypothesis import strategies as st

from exercises.ex5_12_gguf_formats import (
    bits_per_weight,
    dequantize_mxfp4,
    dequantize_nvfp4,
    dequantize_q4_0,
    dequantize_q4_1,
    dequantize_q8_0,
    quantize_mxfp4,
    quantize_nvfp4,
    quantize_q4_0,
    quantize_q4_1,
    quantize_q8_0,
    round_half_away,
)
from kata.harness.check import expect_at_most, expect_close, expect_equal, expect_tensor, expect_tensor_equal, raises

# (values per block, bytes per block) of each format: the contract, written here, never read from the answer.
BLOCKS = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20), "MXFP4": (32, 17), "NVFP4": (64, 36)}

QUANTIZE = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0, "Q4_1": quantize_q4_1, "MXFP4": quantize_mxfp4}
DEQUANTIZE = {"Q8_0": dequantize_q8_0, "Q4_0": dequantize_q4_0, "Q4_1": dequantize_q4_1, "MXFP4": dequantize_mxfp4,
              "NVFP4": dequantize_nvfp4}
EVERY_FORMAT = list(DEQUANTIZE)  # QUANTIZE's and NVFP4 (whose quantize also returns its tensor scale)


def weights(rows=8, k=256, scale=1.0, seed=0) -> torch.Tensor:
    """Normal values with the awkward blocks every format must get right: zeros, a tie for the largest |x|, a
    lone outlier, values exactly halfway between two codes."""
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(seed)) * scale
    x[0, :32] = 0.0  # a block of zeros
    x[1, 3], x[1, 9] = 2.5 * scale, -2.5 * scale  # two values of the same largest |x|: the first one wins
    x[2, 40] = 40.0 * scale  # an outlier that stretches its block's scale
    x[3, :8] = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 3.5, -3.5])  # Q8_0's d = 1: ties at every half
    return x


def gguf_bytes(x: torch.Tensor, fmt: str) -> np.ndarray:
    return gguf_quantize(x.numpy(), getattr(GGMLQuantizationType, fmt))


HEADERS = {"Q8_0": (("d", 2),), "Q4_0": (("d", 2),), "Q4_1": (("d", 2), ("m", 2)), "MXFP4": (("e", 1),)}


def what_the_byte_holds(block: np.ndarray, fmt: str, byte: int) -> str:
    """The field a byte of one block belongs to, and what it decodes to: d / m (fp16), e (E8M0), or the codes the
    byte holds with the values gguf-py reads back for them."""
    start = 0
    for name, size in HEADERS[fmt]:
        if byte < start + size:
            raw = block[start:start + size]
            return f"{name} = {float(raw.view(np.float16)[0]) if size == 2 else int(raw[0])}"
        start += size
    code = int(byte) - start
    positions = [code] if fmt == "Q8_0" else [code, code + 16]  # a nibble byte holds codes j and j + 16
    decoded = gguf_dequantize(block[None], getattr(GGMLQuantizationType, fmt))[0]
    return f"codes {positions} → x̂ {[f'{float(decoded[p]):.6g}' for p in positions]}"


def first_difference(got: torch.Tensor, expected: np.ndarray, fmt: str) -> str:
    """Where the bytes first differ, named in the format's terms, with both blocks."""
    got = got.numpy().reshape(-1, BLOCKS[fmt][1])
    expected = expected.reshape(-1, BLOCKS[fmt][1])
    block, byte = np.argwhere(got != expected)[0]
    return (f"block {block}, byte {byte}: yours holds {what_the_byte_holds(got[block], fmt, byte)}, gguf's "
            f"{what_the_byte_holds(expected[block], fmt, byte)}; your block {got[block].tolist()}, gguf's "
            f"{expected[block].tolist()}")


@pytest.mark.parametrize("scale", [0.02, 1.0, 1000.0])
@pytest.mark.parametrize("fmt", list(QUANTIZE))
def test_the_bytes_are_the_bytes_gguf_writes(fmt, scale):
    x = weights(scale=scale)
    got, expected = QUANTIZE[fmt](x), gguf_bytes(x, fmt)
    expect_tensor(got, f"quantize_{fmt.lower()}(x)", shape=expected.shape, dtype=torch.uint8)
    if not np.array_equal(got.numpy(), expected):
        pytest.fail(f"{fmt} bytes differ from gguf-py's at {first_difference(got, expected, fmt)}")


@pytest.mark.parametrize("fmt", list(QUANTIZE))
def test_dequantize_reads_what_gguf_reads(fmt):
    data = gguf_bytes(weights(scale=0.5, seed=1), fmt)
    got = DEQUANTIZE[fmt](torch.from_numpy(data))
    expect_tensor_equal(got, torch.from_numpy(gguf_dequantize(data, getattr(GGMLQuantizationType, fmt))),
                        f"dequantize_{fmt.lower()} of gguf-py's bytes")


def test_nvfp4_reads_any_valid_bytes_as_gguf_does():
    g = torch.Generator().manual_seed(2)
    data = torch.randint(0, 256, (4, 36 * 3), dtype=torch.uint8, generator=g).reshape(-1, 36)
    data[:, :4] = torch.randint(0, 0x7F, (data.shape[0], 4), dtype=torch.uint8, generator=g)  # valid UE4M3 scales
    data = data.reshape(4, -1)
    expected = gguf_dequantize(data.numpy(), GGMLQuantizationType.NVFP4)
    expect_tensor_equal(dequantize_nvfp4(data), torch.from_numpy(expected), "dequantize_nvfp4 of random bytes")
    expect_tensor_equal(dequantize_nvfp4(data, 0.25), torch.from_numpy(expected) * 0.25, "… times tensor_scale")


def test_nvfp4_scales_are_e4m3_and_its_values_e2m1_times_the_tensor_scale():
    x = weights(rows=4, k=128, scale=3.0)
    data, tensor_scale = quantize_nvfp4(x)
    expect_tensor(data, "NVFP4 bytes", shape=(4, 2 * 36), dtype=torch.uint8)
    expect_close(tensor_scale, x.abs().max().item() / (6 * 448), "tensor_scale = max|x| / (6 · 448)", rel=1e-6)
    back = dequantize_nvfp4(data, tensor_scale)
    expect_tensor_equal(back, torch.from_numpy(gguf_dequantize(data.numpy(), GGMLQuantizationType.NVFP4))
                        * tensor_scale, "dequantize_nvfp4 against gguf-py's decoding")
    # The largest value of each sub-block of 16 is reached within E4M3's rounding of its scale (2⁻⁴ relative)
    # and at most half the widest E2M1 step (between 4 and 6: 1/6 of the sub-block's max) anywhere.
    blocks, approx = x.reshape(-1, 16), back.reshape(-1, 16)
    nonzero = blocks.abs().amax(-1) > 0  # (the all-zero sub-block reads back exactly: see the zeros test)
    worst = ((approx - blocks).abs().amax(-1)[nonzero] / blocks.abs().amax(-1)[nonzero]).max().item()
    expect_at_most(worst, 1 / 6 + 2**-4, "the worst error in a sub-block, relative to its max|x|")


@pytest.mark.parametrize(("fmt", "bits"), [("Q8_0", 8.5), ("Q4_0", 4.5), ("Q4_1", 5.0), ("MXFP4", 4.25),
                                           ("NVFP4", 4.5)])
def test_bits_per_weight_counts_every_byte_of_a_block(fmt, bits):
    expect_close(bits_per_weight(fmt), bits, f"bits_per_weight({fmt!r})", rel=0)


def test_round_half_away_rounds_halves_away_from_zero_and_nothing_else():
    v = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.49999997, 3.0, 0.0])
    expect_tensor_equal(round_half_away(v), torch.tensor([1.0, 2.0, 3.0, -1.0, -3.0, 0.0, -0.0, 3.0, 0.0]),
                        "round_half_away (0.49999997 + 0.5 rounds up to 1 in float32: do not add 0.5)")


def test_a_block_of_zeros_stores_zeros_and_reads_back_zeros():
    x = torch.zeros(2, 64)
    for fmt, quantize in QUANTIZE.items():
        expect_tensor_equal(DEQUANTIZE[fmt](quantize(x)), x, f"{fmt} round trip of zeros")
    data, tensor_scale = quantize_nvfp4(x)
    expect_equal(tensor_scale, 1.0, "tensor_scale of an all-zero tensor")
    expect_tensor_equal(dequantize_nvfp4(data, tensor_scale), x, "NVFP4 round trip of zeros")


@given(st.integers(1, 3), st.integers(1, 4), st.sampled_from([1e-30, 1e-3, 1.0, 60.0, 500.0]), st.integers(0, 99))
def test_any_shape_and_magnitude_gives_gguf_bytes(rows, blocks_of_64, magnitude, seed):
    x = torch.randn(rows, 64 * blocks_of_64, generator=torch.Generator().manual_seed(seed)) * magnitude
    for fmt, quantize in QUANTIZE.items():
        got, expected = quantize(x), gguf_bytes(x, fmt)
        if not np.array_equal(got.numpy(), expected):
            pytest.fail(f"{fmt}, {rows} × {x.shape[1]}, |x| ~ {magnitude}: {first_difference(got, expected, fmt)}",
                        pytrace=False)


def test_q8_0_multiplies_by_one_over_d_as_gguf_does():
    """x · (1/d) and x / d round differently for some values: here 78 against 77 (found among 4 million random
    blocks; about one 4 × 256 tensor in 900 holds such a value)."""
    x = torch.zeros(1, 32)
    x[0, 0], x[0, 1] = float.fromhex("-0x1.d095f0p+0"), float.fromhex("0x1.1b81cap+0")  # max |x|, and the value
    codes = quantize_q8_0(x)[0, 2:4].view(torch.int8)
    expect_tensor_equal(codes, torch.tensor([-127, 78], dtype=torch.int8), "Q8_0 codes of the block's first two "
                        "values (x · (1/d) gives 78; x / d would give 77)")


def test_values_too_small_for_a_scale_store_a_block_that_reads_back_as_zero():
    x = torch.full((1, 64), 1e-42)  # float32 subnormals: d and 1/d leave float16 and float32
    for fmt, quantize in QUANTIZE.items():
        values, size = BLOCKS[fmt]
        stored = quantize(x)  # bytes of the format's shape; which ones is free (gguf-py's Q4_0 codes differ here)
        expect_tensor(stored, f"quantize_{fmt.lower()} of subnormals", shape=(1, 64 // values * size),
                      dtype=torch.uint8)
        back = DEQUANTIZE[fmt](stored)
        expect_tensor(back, f"{fmt} round trip of subnormals", shape=(1, 64), dtype=torch.float32, finite=False)
        assert torch.isfinite(back).all(), f"{fmt} round trip of subnormals is not finite: {back[0, :4]}"
        expect_at_most(back.abs().max().item(), 1e-30, f"{fmt} round trip of subnormals")


def test_the_largest_float16_values_come_back_within_a_step():
    x = torch.full((1, 32), 65504.0)
    x[0, 1::2] = -65504.0
    for fmt in ("Q8_0", "Q4_0", "Q4_1"):
        got, expected = QUANTIZE[fmt](x), gguf_bytes(x, fmt)
        assert np.array_equal(got.numpy(), expected), f"{fmt} at ±65504: {first_difference(got, expected, fmt)}"
        # No overflow: each value comes back within one step of its block (Q4_0 spends 8 steps on one side, 7 on
        # the other: −65504 reads back as −7/8 of it, one step of 65504 / 8 away).
        error = (DEQUANTIZE[fmt](got) - x).abs().max().item()
        expect_at_most(error, 65504 / 8 + 1, f"{fmt} round trip error at ±65504")


@pytest.mark.parametrize("fmt", EVERY_FORMAT)
def test_leading_dimensions_are_kept(fmt):
    quantize = QUANTIZE.get(fmt, lambda x: quantize_nvfp4(x)[0])
    data = quantize(torch.randn(2, 3, 128, generator=torch.Generator().manual_seed(4)))
    size, nbytes = BLOCKS[fmt]
    expect_tensor(data, f"{fmt} bytes of a (2, 3, 128) tensor", shape=(2, 3, 128 // size * nbytes), dtype=torch.uint8)
    expect_tensor(DEQUANTIZE[fmt](data), f"{fmt} values", shape=(2, 3, 128), dtype=torch.float32)


@pytest.mark.bad_input
@pytest.mark.parametrize("fmt", EVERY_FORMAT)
def test_a_width_that_is_not_whole_blocks_is_a_value_error(fmt):
    quantize = QUANTIZE.get(fmt, quantize_nvfp4)
    with raises(ValueError, match=r"\bx\b", valid=lambda: quantize(torch.zeros(2, 64))):
        quantize(torch.zeros(2, 48))


@pytest.mark.bad_input
@pytest.mark.parametrize("fmt", EVERY_FORMAT)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_are_value_errors(fmt, bad):
    quantize = QUANTIZE.get(fmt, quantize_nvfp4)
    x = torch.zeros(1, 64)
    x[0, 5] = bad
    with raises(ValueError, match="NaN", valid=lambda: quantize(torch.zeros(1, 64))):
        quantize(x)


@pytest.mark.bad_input
@pytest.mark.parametrize("fmt", EVERY_FORMAT)
def test_integer_weights_are_a_type_error(fmt):
    quantize = QUANTIZE.get(fmt, quantize_nvfp4)
    with raises(TypeError, match=r"\bx\b", valid=lambda: quantize(torch.zeros(1, 64))):
        quantize(torch.zeros(1, 64, dtype=torch.int32))


@pytest.mark.bad_input
@pytest.mark.parametrize("fmt", list(DEQUANTIZE))
def test_bytes_of_the_wrong_dtype_or_length_are_refused(fmt):
    nbytes = BLOCKS[fmt][1]
    with raises(TypeError, match=r"\bdata\b",
                valid=lambda: DEQUANTIZE[fmt](torch.zeros(1, 2 * nbytes, dtype=torch.uint8))):
        DEQUANTIZE[fmt](torch.zeros(1, nbytes, dtype=torch.int8))
    with raises(ValueError, match=r"\bdata\b",
                valid=lambda: DEQUANTIZE[fmt](torch.zeros(1, 2 * nbytes, dtype=torch.uint8))):
        DEQUANTIZE[fmt](torch.zeros(1, nbytes + 1, dtype=torch.uint8))


@pytest.mark.bad_input
def test_an_unknown_format_is_a_value_error():
    with raises(ValueError, match=r"\bfmt\b", valid=lambda: bits_per_weight("Q8_0")):
        bits_per_weight("Q5_K")


@pytest.mark.slow
@pytest.mark.parametrize(("tensor", "fmt", "quantize"), [("blk.0.ffn_down.weight", "Q4_1", quantize_q4_1),
                                                          ("blk.29.attn_v.weight", "Q4_1", quantize_q4_1),
                                                          ("token_embd.weight", "Q8_0", quantize_q8_0)])
def test_the_real_models_weights_requantize_to_the_shipped_bytes(tensor, fmt, quantize, record_property):
    from gguf import GGUFReader

    from kata.smollm2 import gguf_path

    stored = next(t for t in GGUFReader(gguf_path()).tensors if t.name == tensor)
    expect_equal(stored.tensor_type.name, fmt, f"{tensor}'s type in the shipped GGUF")
    raw = np.array(stored.data[:1536])  # at most 1,536 rows: enough blocks, a few seconds
    values = torch.from_numpy(gguf_dequantize(raw, stored.tensor_type))  # the model's float weights, as kata loads
    raw = torch.from_numpy(raw)
    same = (quantize(values) == raw).reshape(-1, BLOCKS[fmt][1]).all(-1).float().mean().item()
    record_property("measured", f"5.12 {tensor} re-quantized to {fmt}: {same:.2%} of blocks byte-identical")
    expect_equal(same, 1.0, f"share of {tensor}'s blocks re-quantized to the same {fmt} bytes")
