"""Tests for practice (b) — calibration captures, channel statistics, the Hessian. 测试：校准。"""

import itertools

import pytest
import torch

from exercises.ex5_4_calibration import HessianAccumulator, capture_inputs, channel_stats, hessian
from kata.harness.check import expect_equal, expect_tensor, expect_tensor_close, raises
from kata.llama import tiny_llama

IDS = torch.randint(0, 256, (5, 12), generator=torch.Generator().manual_seed(0))


def test_inputs_are_captured_flattened_per_module():
    got = capture_inputs(tiny_llama(), ["layers.0.self_attn.q_proj", "layers.1.mlp.down_proj"], IDS, batch_size=2)
    expect_tensor(got["layers.0.self_attn.q_proj"], "q_proj input", shape=(60, 64), dtype=torch.float32)
    expect_tensor(got["layers.1.mlp.down_proj"], "down_proj input", shape=(60, 128), dtype=torch.float32)


def test_more_sequences_than_tokens_are_all_captured():
    ids = torch.randint(0, 256, (10, 4), generator=torch.Generator().manual_seed(6))
    got = capture_inputs(tiny_llama(), ["layers.0.mlp.up_proj"], ids, batch_size=8)
    expect_tensor(got["layers.0.mlp.up_proj"], "up_proj input of 10 × 4 tokens", shape=(40, 64))


def test_the_first_q_proj_sees_the_normed_embeddings_in_token_order():
    model = tiny_llama()
    got = capture_inputs(model, ["layers.0.self_attn.q_proj"], IDS, batch_size=2)["layers.0.self_attn.q_proj"]
    with torch.no_grad():
        expected = model.layers[0].input_layernorm(model.embed_tokens(IDS)).reshape(-1, 64)
    expect_tensor_close(got, expected, "captured q_proj input", atol=1e-6)


def test_hooks_are_removed_afterwards():
    model = tiny_llama()
    up_proj = model.layers[0].mlp.up_proj
    got = capture_inputs(model, ["layers.0.mlp.up_proj"], IDS)["layers.0.mlp.up_proj"]
    assert not up_proj._forward_pre_hooks, "a hook was left on up_proj"
    seen = []  # what up_proj receives, seen by a hook of our own once the capture's hooks are gone
    handle = up_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0].reshape(-1, 64)))
    with torch.no_grad():
        model(IDS)
    handle.remove()
    # The same forward of the same model: float32 rounding at most.
    expect_tensor_close(got, torch.cat(seen), "the up_proj inputs captured before the hooks came off", atol=1e-6)


@pytest.mark.bad_input
def test_hooks_are_removed_even_when_the_forward_fails():
    model = tiny_llama()
    with raises(IndexError, valid=lambda: capture_inputs(model, ["layers.0.mlp.up_proj"], IDS)):
        capture_inputs(model, ["layers.0.mlp.up_proj"], torch.full((1, 4), 999))  # token id out of range
    assert not model.layers[0].mlp.up_proj._forward_pre_hooks, "a hook was left after an error"


@pytest.mark.bad_input
def test_an_unknown_module_name_is_a_value_error():
    with raises(ValueError, match=r"\bnames\b",
                valid=lambda: capture_inputs(tiny_llama(), ["layers.0.mlp.up_proj"], IDS)):
        capture_inputs(tiny_llama(), ["layers.7.mlp.up_proj"], IDS)


def test_channel_stats_of_a_known_input():
    got = channel_stats(torch.tensor([[1.0, -4.0], [-3.0, 0.0]]))
    expect_tensor_close(got["mean_abs"], torch.tensor([2.0, 2.0]), "mean_abs", atol=1e-6)
    expect_tensor_close(got["max_abs"], torch.tensor([3.0, 4.0]), "max_abs", atol=0)
    expect_tensor_close(got["rms"], torch.tensor([5.0**0.5, 8.0**0.5]), "rms", atol=1e-6)


def test_channel_stats_and_the_hessian_are_per_last_dimension_channel():
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(3))  # (batch, tokens, channels)
    rows = x.reshape(15, 4)
    expect_tensor_close(channel_stats(x)["max_abs"], rows.abs().amax(0), "max_abs of (3, 5, 4) activations", atol=0)
    expect_tensor_close(hessian(x), hessian(rows), "H of (3, 5, 4) activations", atol=1e-12)
    expect_tensor(hessian(x), "H of (3, 5, 4) activations", shape=(4, 4))


@pytest.mark.bad_input
def test_channel_stats_rejects_an_empty_input():
    with raises(ValueError, match=r"\bx\b", valid=lambda: channel_stats(torch.ones(1, 4))):
        channel_stats(torch.zeros(0, 4))


def test_the_hessian_of_the_worked_example():
    got = hessian(torch.tensor([[1.0, 0.0], [1.0, 2.0]]))
    expect_tensor(got, "H", shape=(2, 2), dtype=torch.float64)
    expect_tensor_close(got, torch.tensor([[2.0, 2.0], [2.0, 4.0]], dtype=torch.float64), "H", atol=1e-12)


def test_streaming_batches_equal_the_one_shot_formula():
    x = torch.randn(1000, 16, generator=torch.Generator().manual_seed(1))
    acc = HessianAccumulator(16)
    offsets = [0, 1, 8, 200, 500, 1000]  # uneven batches on purpose
    for lo, hi in itertools.pairwise(offsets):
        acc.add(x[lo:hi])
    expect_tensor_close(acc.value, hessian(x), "streamed H", atol=1e-10, rtol=1e-10)


def test_the_accumulator_takes_three_dimensional_batches():
    x = torch.randn(3, 10, 8, generator=torch.Generator().manual_seed(2))
    acc = HessianAccumulator(8)
    acc.add(x[:1])
    acc.add(x[1:])
    expect_tensor_close(acc.value, hessian(x.reshape(-1, 8)), "H from (B, T, d) batches", atol=1e-10)
    expect_equal(acc.value.dtype, torch.float64, "H dtype")


@pytest.mark.slow
def test_real_activations_have_outlier_channels_that_weights_lack(smollm2):
    # SmolLM2's down_proj inputs: a few channels carry far more than the rest (why activations are hard, 4.1 Q2).
    from kata.evaluate import calibration_windows

    x = capture_inputs(smollm2, ["layers.5.mlp.down_proj"], calibration_windows(2))["layers.5.mlp.down_proj"]
    stats = channel_stats(x)
    act_ratio = (stats["max_abs"].max() / stats["rms"].median()).item()
    w = smollm2.layers[5].mlp.down_proj.weight
    weight_ratio = (w.abs().max() / w.pow(2).mean().sqrt()).item()
    assert act_ratio > 3 * weight_ratio, f"peak / typical: activations {act_ratio:.0f}, weights {weight_ratio:.0f}"
