"""The calibration flows are deterministic: the same inputs give the same weights, bit for bit."""

import copy

import pytest
import torch

from kata.llama import tiny_llama
from reference.ex5_5_awq import awq_quantize_model, search_awq_scale
from reference.ex5_6_gptq import gptq_quantize_layer, gptq_quantize_model


@pytest.mark.parametrize("flow", [
    lambda m, ids: awq_quantize_model(m, ids, 3, 32),
    lambda m, ids: gptq_quantize_model(m, ids, 3, 32, act_order=True),
    lambda m, ids: (awq_quantize_model(m, ids, 3, 32, round_weights=False), gptq_quantize_model(m, ids, 3, 32)),
], ids=["awq", "gptq", "awq-then-gptq"])
def test_two_runs_on_the_tiny_model_give_identical_weights(flow):
    ids = torch.randint(0, 256, (8, 64), generator=torch.Generator().manual_seed(0))
    first, second = tiny_llama(), tiny_llama()
    flow(first, ids)
    flow(second, ids)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name} differs between two identical runs"


@pytest.mark.slow
def test_two_runs_on_a_real_block_give_identical_weights(smollm2):
    from kata.evaluate import calibration_windows
    from kata.sequential import block_linear_inputs, first_block_input, rope

    ids = calibration_windows(8)
    cos, sin = rope(smollm2, ids.shape[1])
    block = smollm2.layers[0]
    runs = []
    for _ in range(2):
        x = block_linear_inputs(copy.deepcopy(block), first_block_input(smollm2, ids), cos, sin)["mlp.gate_proj"]
        H = (2 / x.shape[0]) * (x.T @ x)
        weights = [block.mlp.gate_proj.weight, block.mlp.up_proj.weight]
        runs.append((gptq_quantize_layer(block.mlp.gate_proj.weight, H, 3, 64, act_order=True),
                     search_awq_scale(weights, x[:4096], 3, 64)[1]))
    assert torch.equal(runs[0][0], runs[1][0]), "GPTQ weights differ between two identical runs"
    assert torch.equal(runs[0][1], runs[1][1]), "AWQ scales differ between two identical runs"
