"""kata.gguf_export: a model written as GGUF reads back (with kata's own loader) as the same model."""

import pytest
import torch

from kata.evaluate import eval_windows, evaluate
from kata.gguf_export import export_gguf, permute
from kata.llama import tiny_llama
from kata.oracles import round_to_nearest
from kata.smollm2 import _unpermute, load_model


def test_permute_is_what_the_loader_undoes():
    w = torch.arange(8 * 3 * 4, dtype=torch.float32).reshape(8 * 3, 4)  # 3 heads of 8 rows
    assert torch.equal(_unpermute(permute(w, 3), 3), w)
    assert not torch.equal(permute(w, 3), w), "llama.cpp's row order differs from the usual one"


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
def test_a_w4_group_32_result_written_as_q4_1_moves_at_most_half_a_step(tmp_path, record_property):
    model = load_model()
    round_to_nearest(model, 4, 32)  # one float scale and an integer zero point per group of 32, as GPTQ stores
    back = load_model(export_gguf(model, tmp_path / "rtn.gguf", "Q4_1"))
    groups = torch.cat([w.reshape(-1, 32) for n, w in model.state_dict().items() if n.endswith("_proj.weight")])
    read = torch.cat([w.reshape(-1, 32) for n, w in back.state_dict().items() if n.endswith("_proj.weight")])
    step = (groups.amax(-1) - groups.amin(-1)) / 15  # Q4_1 re-fits each group to its own [min, max]
    moved = (read - groups).abs().amax(-1)
    exact = (moved == 0).float().mean().item()
    ids = eval_windows(2)
    ours, theirs = evaluate(model, ids)["ppl"], evaluate(back, ids)["ppl"]
    record_property("measured", f"W4 g32 RTN → Q4_1 GGUF: {exact:.1%} of groups unchanged; perplexity {ours:.4f} in "
                                f"memory, {theirs:.4f} read back")
    # A group whose codes reach 0 and 15 is exactly Q4_1's grid (up to fp16 d and m); any other is re-fitted to
    # 16 levels over its own range: at most half a step away, plus the fp16 rounding of d and m.
    assert (moved <= step / 2 * (1 + 2**-8) + 1e-7).all(), f"a group moved by {(moved / step).max():.2f} steps"
    assert abs(theirs - ours) / ours < 5e-3, f"perplexity {ours:.4f} in memory, {theirs:.4f} read back"


@pytest.mark.slow
def test_a_failed_export_leaves_no_file_behind(tmp_path, monkeypatch):
    import gguf

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(load_model(), tmp_path / "model.gguf")
    assert list(tmp_path.iterdir()) == [], "neither the file nor its temporary name may stay"
