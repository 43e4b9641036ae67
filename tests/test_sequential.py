"""kata.sequential: the calibration plumbing's shortcuts change no number."""

import torch

from kata.llama import tiny_llama
from kata.sequential import INPUT_GROUPS, block_linear_inputs, first_block_input, gram, rope, run_block

IDS = torch.randint(0, 256, (6, 32), generator=torch.Generator().manual_seed(0))


def _inputs_from_a_full_forward(block, x, cos, sin, names):
    captured = {n: [] for n in names}
    handles = [block.get_submodule(n).register_forward_pre_hook(
        lambda module, args, n=n: captured[n].append(args[0].reshape(-1, args[0].shape[-1]).float())) for n in names]
    run_block(block, x, cos, sin, batch_size=4)
    for handle in handles:
        handle.remove()
    return {n: torch.cat(chunks) for n, chunks in captured.items()}


def test_stopping_each_batch_after_the_last_capture_captures_what_a_full_forward_sees():
    model = tiny_llama()
    cos, sin = rope(model, IDS.shape[1])
    x = first_block_input(model, IDS)
    for names in (tuple(INPUT_GROUPS), ("self_attn.o_proj",), ("mlp.gate_proj", "self_attn.q_proj")):
        got = block_linear_inputs(model.layers[0], x, cos, sin, names=names, batch_size=4)
        expected = _inputs_from_a_full_forward(model.layers[0], x, cos, sin, names)
        assert got.keys() == expected.keys()
        for name in names:
            assert got[name].shape == (IDS.numel(), expected[name].shape[1])
            assert torch.equal(got[name], expected[name]), name


def test_block_linear_inputs_leaves_no_hook_behind():
    model = tiny_llama()
    cos, sin = rope(model, IDS.shape[1])
    block_linear_inputs(model.layers[0], first_block_input(model, IDS), cos, sin)
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_gram_is_x_transpose_x_for_widths_that_split_evenly_and_unevenly():
    generator = torch.Generator().manual_seed(0)
    for width in (1, 5, 64, 576, 1537):
        x = torch.randn(300, width, generator=generator)
        got = gram(x)
        # Same products, same sums; only the order of a sum may differ between BLAS builds: float32 rounding.
        torch.testing.assert_close(got, x.T @ x, rtol=1e-5, atol=1e-4)
        assert torch.equal(got, got.T), "XᵀX must come out exactly symmetric"
