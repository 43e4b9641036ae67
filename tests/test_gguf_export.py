"""kata.gguf_export: a model written as GGUF reads back (with kata's own loader) as the same model."""

import gguf
import numpy as np
import pytest
import torch

from kata.evaluate import eval_windows, evaluate
from kata.gguf_export import encode, export_gguf, grid_blocks, permute
from kata.llama import tiny_llama
from kata.oracles import dequantize_groups, group_qparams, quantize_to_grid, round_to_nearest
from kata.smollm2 import _unpermute, load_model


def test_permute_is_what_the_loader_undoes():
    w = torch.arange(8 * 3 * 4, dtype=torch.float32).reshape(8 * 3, 4)  # 3 heads of 8 rows
    assert torch.equal(_unpermute(permute(w, 3), 3), w)
    assert not torch.equal(permute(w, 3), w), "llama.cpp's row order differs from the usual one"


def on_a_grid(num_bits: int, symmetric: bool, widen: float = 1.3) -> torch.Tensor:
    """Weights on a group-32 grid whose codes do not reach the grid's ends (a step fitted wider than the group, as
    GPTQ's error feedback leaves it): llama.cpp's own rule re-fits such a group and moves it."""
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(0))
    scale, zero = group_qparams(w, num_bits, 32, symmetric=symmetric)
    scale = (scale * widen).half().float()
    return dequantize_groups(quantize_to_grid(w, scale, zero, num_bits, symmetric=symmetric), scale, zero)


def block_error(data: np.ndarray, fmt: str, values: torch.Tensor) -> np.ndarray:
    """max |read back − values| per block of 32, read back by gguf-py (llama.cpp's reference)."""
    return np.abs(gguf.quants.dequantize(data, gguf.GGMLQuantizationType[fmt]) - values.numpy()).reshape(-1, 32).max(-1)


@pytest.mark.parametrize(("fmt", "num_bits", "symmetric"), [("Q4_1", 4, False), ("Q4_0", 4, True)])
def test_blocks_on_a_grid_keep_their_grid(fmt, num_bits, symmetric):
    values = on_a_grid(num_bits, symmetric)
    qtype = gguf.GGMLQuantizationType[fmt]
    theirs = block_error(gguf.quants.quantize(values.numpy(), qtype), fmt, values)
    ours = block_error(encode(values, qtype), fmt, values)
    largest = values.abs().reshape(-1, 32).amax(-1).numpy()
    assert (theirs > 0.02 * largest).all(), "llama.cpp's rule alone re-fits these blocks (4–6 % of max |w| here)"
    # Q4_1 stores m = −z·s in fp16: one rounding, at most 2⁻¹¹ · |m| ≤ 2⁻¹¹ · max |w|; d = s is fp16 already.
    assert (ours <= 2**-11 * largest).all(), f"a block moved by {(ours / largest).max():.2e} of its max |w|"


@pytest.mark.parametrize("fmt", ["Q4_1", "Q4_0", "Q8_0"])
def test_blocks_on_no_grid_are_written_as_llama_cpp_writes_them(fmt):
    values = torch.randn(8, 96, generator=torch.Generator().manual_seed(1))
    qtype = gguf.GGMLQuantizationType[fmt]
    assert np.array_equal(encode(values, qtype), gguf.quants.quantize(values.numpy(), qtype))


def test_a_q4_1_block_holds_d_m_and_code_j_low_code_j_plus_16_high():
    codes = torch.arange(32) % 16
    data = grid_blocks((1.0 + 0.5 * codes).float()[None], "Q4_1")[0]
    d, m = data[:4].view(np.float16)
    assert (d, m) == (0.5, 1.0)
    assert data[4:].tolist() == [j | (j << 4) for j in range(16)]


def test_an_unknown_format_is_a_value_error_naming_fmt(tmp_path):
    with pytest.raises(ValueError, match=r"\bfmt\b"):
        export_gguf(tiny_llama(), tmp_path / "model.gguf", "Q5_K")


@pytest.mark.parametrize("where", ["a folder", "a missing folder"])
def test_a_path_that_cannot_be_a_new_file_is_a_value_error_naming_path(tmp_path, where):
    path = tmp_path if where == "a folder" else tmp_path / "missing" / "model.gguf"
    with pytest.raises(ValueError, match=r"\bpath\b"):
        export_gguf(tiny_llama(), path)


@pytest.mark.slow
def test_the_float_model_written_as_q4_1_reads_back_bit_for_bit(tmp_path):
    model = load_model()  # its weights came from Q4_1: the format holds them exactly
    back = load_model(export_gguf(model, tmp_path / "baseline.gguf", "Q4_1"))
    for name, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name


@pytest.mark.slow
def test_a_w4_group_32_result_written_as_q4_1_keeps_every_group(tmp_path, record_property):
    model = load_model()
    round_to_nearest(model, 4, 32)  # one float scale and an integer zero point per group of 32, as GPTQ stores
    back = load_model(export_gguf(model, tmp_path / "rtn.gguf", "Q4_1"))
    groups = torch.cat([w.reshape(-1, 32) for n, w in model.state_dict().items() if n.endswith("_proj.weight")])
    read = torch.cat([w.reshape(-1, 32) for n, w in back.state_dict().items() if n.endswith("_proj.weight")])
    moved = (read - groups).abs().amax(-1)
    exact = (moved == 0).float().mean().item()
    ids = eval_windows(2)
    ours, theirs = evaluate(model, ids)["ppl"], evaluate(back, ids)["ppl"]
    record_property("measured", f"W4 g32 RTN → Q4_1 GGUF: {exact:.1%} of groups bit for bit, the largest move "
                                f"{(moved / groups.abs().amax(-1)).max():.1e} of a group's max |w|; perplexity "
                                f"{ours:.4f} in memory, {theirs:.4f} read back")
    # Every group keeps its grid: d = s exactly (fp16 already), m = −z·s rounded once to fp16 (≤ 2⁻¹¹ · max |w|).
    assert (moved <= 2**-11 * groups.abs().amax(-1)).all(), "a group left its grid"
    assert abs(theirs - ours) / ours < 1e-3, f"perplexity {ours:.4f} in memory, {theirs:.4f} read back"


@pytest.mark.slow
def test_llama_cpp_continues_the_exported_model_as_kata_does(tmp_path, record_property):
    """Opt-in: runs only where llama-cpp-python is installed (not part of CI's install; it builds llama.cpp from
    source: CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python, about 15 minutes on 2 cores)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="选装 / opt-in: pip install llama-cpp-python")
    from kata.decode import generate
    from kata.smollm2 import load_tokenizer

    model = load_model()
    round_to_nearest(model, 4, 32)
    path = export_gguf(model, tmp_path / "rtn.gguf", "Q4_1")
    prompt = "The capital of France is"
    tokenizer = load_tokenizer()
    ids = torch.tensor([tokenizer.encode(prompt).ids])
    ours = tokenizer.decode(generate(load_model(path), ids, 6)[0][0].tolist())
    runner = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, verbose=False)
    theirs = runner(prompt, max_tokens=6, temperature=0.0)["choices"][0]["text"]
    record_property("measured", f"llama.cpp {llama_cpp.__version__} on the exported W4 g32 RTN Q4_1 file: "
                                f"{prompt!r} → {theirs!r}; kata's loader of the same file → {ours!r}")
    assert theirs.strip().startswith("Paris"), f"llama.cpp continued {prompt!r} with {theirs!r}"
    assert ours.strip().startswith("Paris"), f"kata continued {prompt!r} with {ours!r}"


@pytest.mark.slow
def test_a_failed_export_leaves_no_file_behind(tmp_path, monkeypatch):
    import gguf

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(load_model(), tmp_path / "model.gguf")
    assert list(tmp_path.iterdir()) == [], "neither the file nor its temporary name may stay"
