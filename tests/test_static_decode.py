"""kata.static_decode: the static decode step (CUDA-graph ready) computes the tokens the eager KV-cache loop does."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kata.decode import generate
from kata.harness.check import expect_equal, expect_tensor, expect_tensor_equal
from kata.llama import tiny_llama
from kata.static_decode import StaticDecoder, generate_static

MODEL = tiny_llama()


def prompt(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, MODEL.cfg.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


@given(st.integers(1, 3), st.integers(1, 12), st.integers(1, 6), st.integers(0, 50))
def test_the_static_step_gives_the_eager_loops_tokens(batch, length, new_tokens, seed):
    ids = prompt(batch, length, seed)
    expect_tensor_equal(generate_static(MODEL, ids, new_tokens), generate(MODEL, ids, new_tokens)[0],
                        f"static against eager greedy tokens (batch {batch}, prompt {length}, {new_tokens} new)")


def test_the_next_token_is_the_argmax_of_the_full_forward():
    ids = prompt(2, 7)
    decoder = StaticDecoder(MODEL, 2, 16)
    first = decoder.prefill(ids)
    with torch.no_grad():
        expect_tensor_equal(first, MODEL(ids)[:, -1:].argmax(-1), "prefill's next token")
        second = decoder.step(first)
        expect_tensor_equal(second, MODEL(torch.cat([ids, first], 1))[:, -1:].argmax(-1), "one step later")
    expect_equal(int(decoder.pos), 8, "the position after a prompt of 7 and one step")


def test_every_buffer_keeps_its_shape_and_place_across_steps():
    decoder = StaticDecoder(MODEL, 1, 12)
    places = [t.data_ptr() for t in (*decoder.keys, *decoder.values, decoder.pos)]
    token = decoder.prefill(prompt(1, 4))
    for _ in range(5):
        token = decoder.step(token)
        expect_tensor(token, "next token", shape=(1, 1), dtype=torch.long)
    expect_equal([t.data_ptr() for t in (*decoder.keys, *decoder.values, decoder.pos)], places,
                 "buffers a CUDA graph would capture")


def test_a_new_prefill_starts_over():
    decoder = StaticDecoder(MODEL, 1, 16)
    first = decoder.prefill(prompt(1, 5, seed=1))
    decoder.step(first)
    expect_tensor_equal(decoder.prefill(prompt(1, 5, seed=1)), first, "the same prompt after a reset")


def test_a_prompt_longer_than_the_cache_is_a_value_error():
    decoder = StaticDecoder(MODEL, 1, 8)
    decoder.prefill(prompt(1, 8))  # exactly full: fine
    with pytest.raises(ValueError, match=r"\bmax_len\b"):
        decoder.prefill(prompt(1, 9))


def test_another_batch_size_than_the_decoder_was_built_for_is_a_value_error():
    decoder = StaticDecoder(MODEL, 2, 8)
    with pytest.raises(ValueError, match=r"\bbatch\b"):
        decoder.prefill(prompt(3, 4))


@pytest.mark.parametrize(("batch", "max_len"), [(0, 8), (1, 0), (1.5, 8), (True, 8)])
def test_sizes_that_are_not_positive_ints_are_value_errors(batch, max_len):
    with pytest.raises(ValueError, match=r"\bbatch\b|\bmax_len\b"):
        StaticDecoder(MODEL, batch, max_len)


def test_a_step_past_max_len_is_a_value_error_naming_max_len():
    decoder = StaticDecoder(MODEL, 1, 6)
    token = decoder.prefill(prompt(1, 4))
    for _ in range(2):
        token = decoder.step(token)
    with pytest.raises(ValueError, match="max_len=6"):
        decoder.step(token)


def test_float_ids_are_a_type_error():
    with pytest.raises(TypeError, match=r"\bids\b"):
        StaticDecoder(MODEL, 1, 8).prefill(torch.zeros(1, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 3])
def test_the_graphed_step_gives_the_eager_loops_tokens_on_cuda(batch):
    from kata.static_decode import generate_graphed

    model = tiny_llama().cuda()
    ids = prompt(batch, 9).cuda()
    expect_tensor_equal(generate_graphed(model, ids, 12).cpu(), generate(model, ids, 12)[0].cpu(),
                        f"graphed against eager greedy tokens on CUDA (batch {batch})")


class Outside(torch.nn.Module):
    """A layer from outside torch and kata, as a learner's quantized linear is."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@pytest.mark.gpu
def test_the_compiled_graphed_step_gives_the_eager_loops_tokens_and_never_traces_outside_layers():
    from kata.llama import replace_linears
    from kata.static_decode import generate_graphed

    model = tiny_llama().cuda()
    replace_linears(model, Outside)
    ids = prompt(2, 9).cuda()
    expect_tensor_equal(generate_graphed(model, ids, 12, compiled=True).cpu(), generate(model, ids, 12)[0].cpu(),
                        "compiled and graphed against eager greedy tokens on CUDA")
    untraced = [getattr(m.forward, "_torchdynamo_disable", False) for m in model.modules() if isinstance(m, Outside)]
    expect_equal(untraced, [True] * 14, "each outside layer left to run as it is (never traced)")


@pytest.mark.gpu
def test_a_replay_of_another_batch_or_past_max_len_is_a_value_error():
    from kata.static_decode import GraphedStep

    decoder = StaticDecoder(tiny_llama().cuda(), 2, 6)
    token = decoder.prefill(prompt(2, 5).cuda())
    step = GraphedStep(decoder)
    with pytest.raises(ValueError, match="batch"):
        step(token[:1])
    token = step(token)
    with pytest.raises(ValueError, match="max_len=6"):
        step(token)


@pytest.mark.gpu
def test_decode_speed_on_cuda_replays_a_captured_graph():
    from kata.decode import decode_speed

    speed = decode_speed(tiny_llama().cuda(), prompt(2, 5).cuda(), new_tokens=6, runs=2)
    expect_equal(speed["graphed"], True, "decode_speed on CUDA: graphed")
    expect_equal(speed["capture_s"] > 0 and speed["tokens_per_s"] > 0, True, "capture time and tokens/s measured")


def test_a_graph_on_the_cpu_is_a_value_error_naming_the_device():
    from kata.static_decode import GraphedStep

    with pytest.raises(ValueError, match="CUDA"):
        GraphedStep(StaticDecoder(MODEL, 1, 8))


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the kernel runs on CUDA, or in the CPU interpreter


def quantized_tiny(num_bits: int, device: str = DEVICE):
    """A tiny Llama whose block linears are the reference 5.3 QuantLinears, in fp16 (the 5.10 kernel's input)."""
    pytest.importorskip("triton", reason="5.10 的内核需要 Triton / 5.10's kernel needs Triton")
    from kata.llama import cast_floats
    from reference.ex5_3_quant_linear import quantize_model

    model = tiny_llama()
    quantize_model(model, num_bits, 32 if num_bits == 4 else None)
    return cast_floats(model, torch.float16).to(device)


def pack_reference(model) -> int:
    from kata.static_decode import pack_projections
    from reference.ex5_10_int4_kernel import prepare, quantized_matmul

    return pack_projections(model, prepare, quantized_matmul)


@pytest.mark.parametrize("num_bits", [4, 8])
def test_a_pack_gives_each_projections_own_output(num_bits):
    from kata.static_decode import projections

    model = quantized_tiny(num_bits)
    attn = model.layers[0].self_attn
    x = torch.randn(1, 3, 64, generator=torch.Generator().manual_seed(0)).half().to(DEVICE)
    with torch.no_grad():
        alone = [getattr(attn, name)(x).float() for name in ("q_proj", "k_proj", "v_proj")]
        pack_reference(model)
        packed = [y.float() for y in projections(attn, ("q_proj", "k_proj", "v_proj"), x)]
    for name, got, expected in zip(("q", "k", "v"), packed, alone, strict=True):
        # the kernel (fp32 sums) against the layer's dequantize path (fp16 matmul): 0.5 % of the norm
        error = ((got - expected).norm() / expected.norm()).item()
        expect_equal(error < 5e-3, True, f"{name} from the pack against {name}_proj's own forward (error {error:.2e})")


def test_packing_makes_four_launches_a_block_and_keeps_the_named_projections():
    model = quantized_tiny(4)
    names = sorted(name for name, _ in model.named_modules() if name.endswith("_proj"))
    expect_equal(pack_reference(model), 4 * model.cfg.num_layers, "packs (q+k+v, o, gate+up, down per block)")
    expect_equal(sorted(name for name, _ in model.named_modules() if name.endswith("_proj")), names,
                 "the projections the exercises address")


def kernel_tokens(model, ids, new_tokens: int) -> torch.Tensor:
    """Greedy tokens of the eager KV-cache loop with every quantized layer in the reference 5.10 KernelLinear:
    the same kernel as the packs, so the two differ only in summation order (the dequantize path could flip a
    near-tie of the tiny random model)."""
    from reference.ex5_10_int4_kernel import use_kernel

    use_kernel(model)
    return generate(model, ids, new_tokens)[0].cpu()


def test_the_packed_decoder_gives_the_kernel_layers_tokens():
    model = quantized_tiny(4)
    ids = prompt(2, 5).to(DEVICE)
    expected = kernel_tokens(model, ids, 4)
    pack_reference(model)
    expect_tensor_equal(generate_static(model, ids, 4).cpu(), expected, "greedy tokens with and without the packs")


@pytest.mark.gpu
@pytest.mark.parametrize("num_bits", [4, 8])
def test_the_packed_compiled_graphed_step_gives_the_eager_loops_tokens_on_cuda(num_bits):
    from kata.static_decode import generate_graphed

    model = quantized_tiny(num_bits, "cuda")
    ids = prompt(1, 9).cuda()
    expected = kernel_tokens(model, ids, 12)
    pack_reference(model)
    expect_tensor_equal(generate_graphed(model, ids, 12, compiled=True).cpu(), expected,
                        "packed, compiled and graphed against the eager loop's greedy tokens")
