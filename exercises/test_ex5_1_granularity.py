"""Tests for practice (a) — granularity, zero points, clipping. 测试：量化粒度、零点与截断。"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from exercises.ex5_1_granularity import (
    choose_qparams,
    dequantize,
    fake_quantize,
    mse_clip_ratio,
    percentile_clip_ratio,
    quantize,
)
from kata.harness.check import (
    expect_at_least,
    expect_at_most,
    expect_close,
    expect_equal,
    expect_tensor,
    expect_tensor_close,
    expect_tensor_equal,
    raises,
)
from kata.oracles import group_qparams, rtn, sqnr_db


def weight_with_outliers(seed: int = 0) -> torch.Tensor:
    """A 64×256 weight like an LLM's: std 0.02, plus two loud output channels and one loud input column."""
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(seed)) * 0.02
    w[3] *= 30
    w[17] *= 20
    w[:, 5] *= 8
    return w


def test_the_worked_asymmetric_example():
    w = torch.tensor([[-1.0, 3.0]])
    scale, zero_point = choose_qparams(w, 4, symmetric=False, granularity="tensor")
    expect_close(scale, 4 / 15, "scale = (hi - lo) / 15")
    expect_close(zero_point, 4, "zero_point = round(-lo / scale)")
    q = quantize(w, scale, zero_point, 4, symmetric=False)
    expect_tensor_equal(q, torch.tensor([[0, 15]], dtype=torch.uint8), "q")
    expect_tensor_close(dequantize(q, scale, zero_point), torch.tensor([[-16 / 15, 44 / 15]]), "ŵ", atol=1e-6)


@pytest.mark.parametrize(("granularity", "shape"), [("tensor", (1, 1)), ("channel", (8, 1)), ("group", (8, 4))])
def test_scale_shape_follows_the_granularity(granularity, shape):
    scale, zero_point = choose_qparams(torch.randn(8, 64), 4, granularity=granularity, group_size=16)
    expect_tensor(scale, "scale", shape=shape, dtype=torch.float32)
    expect_tensor(zero_point, "zero_point", shape=shape, dtype=torch.int32)


def test_symmetric_codes_use_the_full_signed_range_per_channel():
    w = torch.tensor([[0.6, -1.0, 0.3], [2.0, 1.2, -0.6]])
    scale, zero_point = choose_qparams(w, 4, symmetric=True, granularity="channel")
    expect_tensor_close(scale, torch.tensor([[1 / 7], [2 / 7]]), "per-channel scale", atol=1e-7)
    expect_tensor_equal(zero_point, torch.zeros(2, 1, dtype=torch.int32), "symmetric zero_point")
    expect_tensor_equal(quantize(w, scale, zero_point, 4), torch.tensor([[4, -7, 2], [7, 4, -2]], dtype=torch.int8),
                        "q")


def test_group_scales_see_only_their_own_columns():
    w = torch.tensor([[1.0, 1.0, 8.0, 8.0]])
    scale, _ = choose_qparams(w, 8, granularity="group", group_size=2)
    expect_tensor_close(scale, torch.tensor([[1 / 127, 8 / 127]]), "group scales", atol=1e-8)


def test_codes_are_clamped_to_the_grid_when_clipping():
    w = torch.tensor([[-4.0, 1.2, 4.0]])
    scale, zero_point = choose_qparams(w, 4, granularity="tensor", clip_ratio=0.5)
    expect_tensor_equal(quantize(w, scale, zero_point, 4), torch.tensor([[-8, 4, 7]], dtype=torch.int8),
                        "clipped codes (clamp to [-8, 7])")


def test_asymmetric_codes_are_clamped_to_0_and_2_to_the_b_minus_1():
    w = torch.tensor([[-4.0, 0.0, 4.0]])
    scale, zero_point = choose_qparams(w, 3, symmetric=False, granularity="tensor", clip_ratio=0.5)
    q = quantize(w, scale, zero_point, 3, symmetric=False)
    expect_equal((q.min().item(), q.max().item()), (0, 7), "(min, max) code at 3 bits")


@pytest.mark.parametrize(("row", "scale", "zero_point"), [
    ([1.0, 3.0], 3 / 15, 0),  # all positive: lo = min(1, 0) = 0, so 0 sits at code 0
    ([-3.0, -1.0], 3 / 15, 15),  # all negative: hi = max(-1, 0) = 0, so 0 sits at code 15
])
def test_the_asymmetric_range_always_holds_zero(row, scale, zero_point):
    got_scale, got_zero = choose_qparams(torch.tensor([row]), 4, symmetric=False, granularity="tensor")
    expect_close(got_scale, scale, f"scale of {row} (range [min(min, 0), max(max, 0)])")
    expect_close(got_zero, zero_point, f"zero_point of {row}")


def test_zero_is_exactly_representable_in_every_asymmetric_group():
    w = torch.rand(8, 64, generator=torch.Generator().manual_seed(3)) + 0.25  # positive groups: 0 is outside
    w[:, ::16] = 0.0
    w_hat = fake_quantize(w, 3, symmetric=False, granularity="group", group_size=16)
    expect_tensor_equal(w_hat[:, ::16], torch.zeros(8, 4), "ŵ where w = 0")
    # The rest is the 3-bit grid's (the min/max rule of kata.oracles): float32 rounding of one scale only.
    expect_tensor_close(w_hat, rtn(w, 3, 16, symmetric=False), "ŵ of the other weights (W3 g16 asymmetric)",
                        atol=1e-6)


@st.composite
def grouped_weights(draw):
    """(w, group_size): 1–4 rows of 1–4 groups of 1, 2, 4 or 8 values in ±1000, any float32 pattern."""
    rows, groups, group_size = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.sampled_from([1, 2, 4, 8]))
    values = draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=rows * groups * group_size,
                           max_size=rows * groups * group_size))
    return torch.tensor(values).reshape(rows, groups * group_size), group_size


@given(weights=grouped_weights(), num_bits=st.integers(2, 8), symmetric=st.booleans())
def test_round_trip_error_is_at_most_half_a_step(weights, num_bits, symmetric):
    w, group_size = weights
    scale, zero_point = choose_qparams(w, num_bits, symmetric=symmetric, granularity="group", group_size=group_size)
    expect_tensor(scale, "scale", shape=(w.shape[0], w.shape[1] // group_size))
    w_hat = dequantize(quantize(w, scale, zero_point, num_bits, symmetric=symmetric), scale, zero_point)
    # Half a step of each weight's own group, plus a few float32 roundings of values as large as the row's. The
    # step is the min/max rule's (kata.oracles), not the answer's own: a huge scale with zero codes must not pass.
    step, _ = group_qparams(w, num_bits, group_size, symmetric=symmetric)
    slack = 8 * torch.finfo(torch.float32).eps * w.abs().amax(1, keepdim=True)
    bound = step.repeat_interleave(group_size, dim=1) / 2 + slack
    worst = ((w - w_hat).abs() - bound).max().item()
    assert worst <= 0, f"{num_bits}-bit {'sym' if symmetric else 'asym'}: |w - ŵ| exceeds scale/2 by {worst:.3g}"


def test_fake_quantize_equals_the_three_steps():
    w = weight_with_outliers()
    scale, zp = choose_qparams(w, 4, symmetric=False, granularity="group", group_size=64)
    expected = dequantize(quantize(w, scale, zp, 4, symmetric=False), scale, zp)
    got = fake_quantize(w, 4, symmetric=False, granularity="group", group_size=64)
    expect_tensor_close(got, expected, "fake_quantize", atol=0)


def test_error_falls_from_per_tensor_to_per_channel_to_per_group():
    w = weight_with_outliers()
    sqnr = {g: sqnr_db(w, fake_quantize(w, 4, granularity=g, group_size=32)) for g in ("tensor", "channel", "group")}
    # Loud channels stretch a shared scale; finer groups isolate them. Measured ≈ 10 / 13 / 19 dB.
    assert sqnr["tensor"] + 2 < sqnr["channel"] and sqnr["channel"] + 4 < sqnr["group"], f"SQNR (dB) {sqnr}"


def test_asymmetric_beats_symmetric_on_a_shifted_distribution():
    w = torch.rand(64, 128, generator=torch.Generator().manual_seed(1)) + 0.5  # all positive, like post-GELU
    sym = sqnr_db(w, fake_quantize(w, 4, symmetric=True))
    asym = sqnr_db(w, fake_quantize(w, 4, symmetric=False))
    # The symmetric grid wastes its negative half: about 6 dB (one bit) worse.
    assert asym > sym + 4, f"asymmetric {asym:.1f} dB should beat symmetric {sym:.1f} dB by > 4 dB"


def test_percentile_clip_ratio_of_a_known_row():
    w = torch.arange(1.0, 101.0).reshape(1, 100)
    ratio = percentile_clip_ratio(w, 50.0, granularity="channel")
    expect_tensor_close(ratio, torch.tensor([[50.5 / 100]]), "median / max", atol=1e-6)
    small = percentile_clip_ratio(w * 1e-3, 50.0, granularity="channel")  # a ratio: the weights' scale cancels
    expect_tensor_close(small, torch.tensor([[50.5 / 100]]), "median / max of weights below 1", atol=1e-6)


def test_mse_clip_search_never_does_worse_than_min_max_and_here_does_better():
    w = torch.randn(32, 512, generator=torch.Generator().manual_seed(2))  # Gaussian tails: clipping pays
    ratio = mse_clip_ratio(w, 3, granularity="channel")
    expect_tensor(ratio, "ratio", shape=(32, 1))
    plain, clipped = fake_quantize(w, 3), fake_quantize(w, 3, clip_ratio=ratio)
    per_row = ((clipped - w).pow(2).sum(1) <= (plain - w).pow(2).sum(1) + 1e-9)
    assert per_row.all(), "the search includes c = 1, so no row may get worse"
    expect_at_least(sqnr_db(w, clipped) - sqnr_db(w, plain), 0.5, "dB gained by clipping Gaussian tails at 3 bits")
    assert ((ratio >= 0.5) & (ratio <= 1.0)).all(), "ratios come from linspace(1, 0.5)"


@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_clip_search_picks_the_best_candidate_of_each_row(symmetric):
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(4))
    ratio = mse_clip_ratio(w, 3, symmetric=symmetric, granularity="channel", grid=12)
    candidates = torch.linspace(1.0, 0.5, 12)
    errors = torch.stack([(rtn(w, 3, None, symmetric=symmetric, clip_ratio=float(c)) - w).pow(2).sum(1)
                          for c in candidates])  # (candidates, rows)
    chosen = (rtn(w, 3, None, symmetric=symmetric, clip_ratio=ratio) - w).pow(2).sum(1)
    worst = (chosen / errors.min(0).values).max().item()
    expect_at_most(worst, 1 + 1e-5, "the chosen c's squared error ÷ the best candidate's, worst row")


@pytest.mark.bad_input
def test_a_group_size_that_does_not_divide_the_row_is_a_value_error():
    with raises(ValueError, match=r"\bgroup_size\b",
                valid=lambda: choose_qparams(torch.randn(4, 576), 4, granularity="group", group_size=64)):
        choose_qparams(torch.randn(4, 576), 4, granularity="group", group_size=128)


@pytest.mark.bad_input
def test_an_unknown_granularity_is_a_value_error_listing_the_valid_ones():
    with raises(ValueError, match=r"\bchannel\b",
                valid=lambda: choose_qparams(torch.randn(4, 8), 4, granularity="channel")):
        choose_qparams(torch.randn(4, 8), 4, granularity="row")


@pytest.mark.bad_input
def test_a_weight_that_is_not_2d_is_a_value_error():
    with raises(ValueError, match=r"\bw\b", valid=lambda: choose_qparams(torch.randn(4, 8), 4)):
        choose_qparams(torch.randn(4, 8, 2), 4)


@pytest.mark.bad_input
def test_num_bits_outside_2_to_8_is_a_value_error():
    with raises(ValueError, match=r"\bnum_bits\b",
                valid=lambda: [choose_qparams(torch.randn(4, 8), b) for b in (2, 8)]):
        choose_qparams(torch.randn(4, 8), 9)


@pytest.mark.bad_input
def test_nan_in_the_weight_is_a_value_error():
    w = torch.randn(4, 8)
    w[1, 2] = float("nan")
    with raises(ValueError, match=r"\bNaN\b", valid=lambda: choose_qparams(torch.randn(4, 8), 4)):
        choose_qparams(w, 4)


WEIGHT_FUNCTIONS = {  # every function that takes a weight w, called with otherwise valid arguments
    "choose_qparams": lambda w, **kw: choose_qparams(w, 4, **kw),
    "fake_quantize": lambda w, **kw: fake_quantize(w, 4, **kw),
    "percentile_clip_ratio": lambda w, **kw: percentile_clip_ratio(w, 99.0, **kw),
    "mse_clip_ratio": lambda w, **kw: mse_clip_ratio(w, 4, grid=3, **kw),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("function", WEIGHT_FUNCTIONS)
@pytest.mark.parametrize(("bad", "error"), [
    (torch.tensor([[1.0, float("nan")]]), ValueError), (torch.zeros(0, 4), ValueError),
    (torch.ones(2, 4, dtype=torch.int32), TypeError),
])
def test_every_function_names_w_when_it_rejects_it(function, bad, error):
    with raises(error, match=r"\bw\b", valid=lambda: WEIGHT_FUNCTIONS[function](torch.randn(4, 8))):
        WEIGHT_FUNCTIONS[function](bad)


@pytest.mark.bad_input
@pytest.mark.parametrize("function", WEIGHT_FUNCTIONS)
def test_every_function_names_granularity_when_it_rejects_it(function):
    with raises(ValueError, match=r"\bgranularity\b",
                valid=lambda: WEIGHT_FUNCTIONS[function](torch.randn(4, 8), granularity="tensor")):
        WEIGHT_FUNCTIONS[function](torch.randn(4, 8), granularity="row")


@pytest.mark.bad_input
@pytest.mark.parametrize("group_size", [0, -4, 2.0, None])
def test_a_group_size_that_is_not_a_positive_int_is_a_value_error(group_size):
    with raises(ValueError, match=r"\bgroup_size\b",
                valid=lambda: choose_qparams(torch.randn(4, 8), 4, granularity="group", group_size=1)):
        choose_qparams(torch.randn(4, 8), 4, granularity="group", group_size=group_size)


@pytest.mark.bad_input
@pytest.mark.parametrize("percentile", [0, -1, 100.5])
def test_a_percentile_outside_0_to_100_is_a_value_error(percentile):
    with raises(ValueError, match=r"\bpercentile\b",
                valid=lambda: [percentile_clip_ratio(torch.randn(4, 8), p) for p in (0.5, 100)]):
        percentile_clip_ratio(torch.randn(4, 8), percentile)


def test_the_100th_percentile_keeps_the_full_range():
    expect_tensor_close(percentile_clip_ratio(torch.randn(4, 8), 100.0), torch.ones(4, 1), "ratio at p = 100",
                        atol=1e-6)


@pytest.mark.bad_input
def test_quantize_names_w_and_num_bits_when_it_rejects_them():
    scale, zero = torch.ones(2, 1), torch.zeros(2, 1, dtype=torch.int32)
    with raises(ValueError, match=r"\bw\b", valid=lambda: quantize(torch.ones(2, 2), scale, zero, 4)):
        quantize(torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]), scale, zero, 4)
    with raises(ValueError, match=r"\bnum_bits\b", valid=lambda: quantize(torch.ones(2, 2), scale, zero, 8)):
        quantize(torch.ones(2, 2), scale, zero, 9)


def test_codes_are_int8_when_symmetric_and_uint8_when_not():
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(7))
    for symmetric, dtype in ((True, torch.int8), (False, torch.uint8)):
        scale, zero = choose_qparams(w, 4, symmetric=symmetric)
        expect_tensor(quantize(w, scale, zero, 4, symmetric=symmetric), "codes", dtype=dtype)



def test_the_defaults_are_4_bit_symmetric_per_channel():
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(7))
    scale, zero = choose_qparams(w)
    expect_tensor_equal(scale, choose_qparams(w, 4, symmetric=True, granularity="channel")[0], "default scale")
    half = scale / 2  # codes up to ±14: only a 4-bit clamp brings them back to −8 … 7
    expect_tensor_equal(quantize(w, half, zero), quantize(w, half, zero, 4, symmetric=True), "default quantize")
    expect_tensor_equal(fake_quantize(w), fake_quantize(w, 4, symmetric=True, granularity="channel"),
                        "default fake_quantize")
    expect_tensor_equal(mse_clip_ratio(w), mse_clip_ratio(w, 4, symmetric=True, granularity="channel", grid=20,
                                                          min_ratio=0.5), "default mse_clip_ratio")
    expect_tensor_equal(percentile_clip_ratio(w), percentile_clip_ratio(w, 99.9, granularity="channel"),
                        "default percentile_clip_ratio")


def test_asymmetric_zero_points_are_int32():
    _, zero = choose_qparams(torch.randn(4, 32, generator=torch.Generator().manual_seed(8)), 4, symmetric=False)
    expect_tensor(zero, "zero_point", shape=(4, 1), dtype=torch.int32)


def test_a_percentile_below_one_is_allowed():
    w = torch.randn(2, 1000, generator=torch.Generator().manual_seed(9))
    expect_tensor(percentile_clip_ratio(w, 0.5), "percentile_clip_ratio(w, 0.5)", shape=(2, 1))


@pytest.mark.parametrize("clip", [mse_clip_ratio, percentile_clip_ratio])
def test_clip_ratios_come_per_group(clip):
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(10))
    w[:, :16] *= 10  # one loud group per row: its ratio differs from the quiet groups'
    got = clip(w, granularity="group", group_size=16)
    expect_tensor(got, f"{clip.__name__}(granularity='group', group_size=16)", shape=(4, 4))
    for g in range(4):
        alone = clip(w[:, 16 * g:16 * (g + 1)].contiguous(), granularity="channel")  # (4, 1)
        expect_tensor_close(got[:, g], alone[:, 0], f"group {g} against the same columns alone", atol=1e-6, rtol=0)
