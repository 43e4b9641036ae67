"""The lab: the chapter's tables from measurement, written as each finishes, clear errors for bad options."""

import json

import pytest
import torch

from kata import cpu
from kata.harness import target
from kata.lab import context, format_registry, formats, run
from kata.llama import Llama, LlamaConfig
from kata.smollm2 import ModelUnavailable, check_model_path
from tests.helpers import run_python

pytestmark = pytest.mark.usefixtures("torch_settings")  # the lab's main() sets threads, determinism and the seed


@pytest.mark.slow
def test_the_reference_lab_has_the_chapter_tables_and_measured_memory():
    report = "\n".join(run.sections(context.Context(context.Settings()), quality_sections=False))
    assert "| int4 | 3.50 | 0.25× |" in report  # 1.1/1.2: 7B memory by format
    assert "| int4-g128 | 3.61 | 0.26× |" in report  # 4.125 bits per weight
    assert "| fp16 | 16 | 0% |" in report  # 3.1: saving next to error
    assert "| layers.10.mlp.down_proj |" in report and "| 是 yes |" in report  # 4.1 Q2 on real activations
    # 5.3: packed W4 g64 with an fp16 scale and a uint8 zero point per group is 4 + 24/64 bits, exactly.
    assert "| int4 g64 asym (W4A16) | 4.375 | 58,060,800 | 58,060,800 | 4.375 |" in report
    assert "not implemented" not in report and "True" not in report


@pytest.mark.slow
def test_the_lab_on_the_stubs_marks_each_section_not_implemented(tmp_path):
    # In its own process: this one has pytest's target switch installed.
    proc = run_python("-m", "kata.lab", "--quick", "--target", "exercises", "--out", str(tmp_path / "report.md"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert report.count("not implemented yet") == 5, report
    assert "[lab] loading the model" in proc.stdout and "[lab] 5. " in proc.stdout, "each phase is announced"


def test_each_finished_section_is_written_before_the_next_starts(tmp_path, monkeypatch):
    def two_sections_then_interrupted(ctx, quality_sections=True):
        yield "# report\n"
        yield "## 1. first\n\nbody\n"
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "sections", two_sections_then_interrupted)
    monkeypatch.setattr(context.Context, "__init__", lambda self, settings: None)  # no model needed
    out = tmp_path / "report.md"
    with pytest.raises(KeyboardInterrupt):
        run.main(["--out", str(out), "--threads", "1"])
    assert out.read_text(encoding="utf-8") == "# report\n\n## 1. first\n\nbody\n\n"


def lab_without_running(monkeypatch) -> list[context.Settings]:
    """run.main parses, chooses and announces, but loads no model and computes no section; the settings it made."""
    made = []
    monkeypatch.setattr(context.Context, "__init__", lambda self, settings: made.append(settings))
    monkeypatch.setattr(run, "sections", lambda ctx, quality_sections=True: iter(()))
    monkeypatch.delenv(target.ENV_VAR, raising=False)
    return made


def without_reference(monkeypatch, tmp_path) -> None:
    """A class copy of the kata: exercises/ and no reference/."""
    (tmp_path / "exercises").mkdir()
    monkeypatch.setattr(target, "ROOT", tmp_path)


def test_the_lab_runs_the_reference_where_it_exists_and_says_so(monkeypatch, capsys, tmp_path):
    made = lab_without_running(monkeypatch)
    run.main(["--out", str(tmp_path / "report.md"), "--threads", "1"])
    assert made[0].target == "reference"
    assert "目标：reference（默认：有 reference/ 文件夹）/ target: reference (the default where reference/ exists)" \
        in capsys.readouterr().out


def test_a_class_copy_without_reference_runs_the_exercises_and_says_why(monkeypatch, capsys, tmp_path):
    made = lab_without_running(monkeypatch)
    without_reference(monkeypatch, tmp_path)
    run.main(["--out", str(tmp_path / "report.md"), "--threads", "1"])
    assert made[0].target == "exercises"
    assert "target: exercises (the default without reference/; unsolved sections say so)" in capsys.readouterr().out


def test_kata_target_chooses_the_labs_target_too(monkeypatch, capsys, tmp_path):
    made = lab_without_running(monkeypatch)
    monkeypatch.setenv(target.ENV_VAR, "exercises")
    run.main(["--out", str(tmp_path / "report.md"), "--threads", "1"])
    assert made[0].target == "exercises"
    assert "target: exercises (chosen with $KATA_TARGET)" in capsys.readouterr().out


def test_an_explicit_reference_target_without_reference_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    lab_without_running(monkeypatch)
    without_reference(monkeypatch, tmp_path)
    with pytest.raises(SystemExit) as stop:
        run.main(["--target", "reference", "--out", str(tmp_path / "report.md")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert "no reference/ folder here" in err and "Traceback" not in err, err


def test_an_unknown_target_is_a_one_line_error_naming_the_valid_ones(monkeypatch, capsys, tmp_path):
    lab_without_running(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        run.main(["--target", "solutions", "--out", str(tmp_path / "report.md")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert "'solutions'" in err and "exercises, reference" in err, err


def test_a_model_path_that_does_not_exist_is_a_plain_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        run.main(["--model", "/nonexistent/checkpoint"])
    assert stop.value.code == 2
    assert "no such file or folder: /nonexistent/checkpoint" in capsys.readouterr().err


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(ModelUnavailable, match=r"config\.json"):
        check_model_path(tmp_path)


def test_a_hugging_face_checkpoint_without_transformers_says_which_extra_to_install(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match=r'pip install -e "\.\[hf\]"'):
        check_model_path(tmp_path)


def test_block_progress_reports_every_fifth_block_and_the_last(capsys):
    model = Llama(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=8, num_layers=7, num_heads=2,
                              num_kv_heads=1))
    with context.block_progress(model, "W4 test"):
        model.hidden_states(torch.zeros(1, 3, dtype=torch.long))
    out = capsys.readouterr().out
    assert "W4 test: block 5/7" in out and "W4 test: block 7/7" in out and "block 1/7" not in out
    assert not model.layers[0]._forward_pre_hooks, "the progress hooks must come off"


def test_the_readme_block_is_replaced_between_its_markers():
    readme = f"intro\n{run.README_START}\nold\n{run.README_END}\noutro\n"
    got = run.splice_readme(readme, "# report\n\n## 1. table\n\n| a |\n")
    assert got == f"intro\n{run.README_START}\n## report\n\n### 1. table\n\n| a |\n{run.README_END}\noutro\n"


def test_a_readme_without_markers_is_refused():
    with pytest.raises(ValueError, match="lab-report:start"):
        run.splice_readme("no markers here", "# report")


def test_an_unknown_format_name_is_a_usage_error_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as stop:
        run.main(["--formats", "W4A16 RTN g64; W5 magic"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--formats" in err and "'W5 magic'" in err and "NF4 g64" in err, err


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    points = [(4.375, 0.12), (4.25, 0.30), (4.75, 0.31), (8.0, 0.004), (8.0, 0.03), (16.0, 0.001)]
    assert formats.pareto_front(points) == [(4.25, 0.30), (4.375, 0.12), (8.0, 0.004), (16.0, 0.001)]


def test_the_gpu_note_lists_the_benchmarks_json_or_says_how_to_get_it(tmp_path):
    assert "nox -s bench" in formats.gpu_note((tmp_path,))
    (tmp_path / "kernel_8192x8192_m1.json").write_text(
        '{"device": "NVIDIA H100", "torch": "2.11", "triton": "3.6", "M": 1, '
        '"results": {"fp16 F.linear": {"device_us": 60.0}, "int4": {"device_us": 30.0}}}')
    note = formats.gpu_note((tmp_path / "absent", tmp_path))
    assert "NVIDIA H100, torch 2.11, Triton 3.6" in note and "M = 1: fp16 F.linear 60.0 µs (1.00×), int4 30.0 µs " \
        "(2.00×)" in note, note
    assert "decode" not in note, "no decode JSON, no decode line"


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])  # fp16: a card without native bf16 (a T4)
def test_the_gpu_note_quotes_batch_one_decode_against_the_runs_own_base(tmp_path, dtype):
    (tmp_path / "kernel_8192x8192_m1.json").write_text(
        '{"device": "NVIDIA H200", "torch": "2.11", "triton": "3.6", "M": 1, '
        '"results": {"fp16 F.linear": {"device_us": 60.0}}}')
    results = {f"{dtype} graph, batch 1": 80.0, f"{dtype} compiled graph, batch 1": 100.0,
               f"{dtype} compiled graph, batch 16": 1000.0, "W4 graph, batch 1": 150.0}
    (tmp_path / "decode_Llama-3-8B.json").write_text(json.dumps(
        {"model": "Llama-3-8B", "layers": 32, "lm_head": dtype, "base": f"{dtype} compiled graph",
         "results": {name: {"tokens_per_s": speed} for name, speed in results.items()}}))
    note = formats.gpu_note((tmp_path,))
    assert (f"- Llama-3-8B shapes (32 layers, random weights, lm_head {dtype}; × = against {dtype} compiled graph): "
            f"{dtype} graph 80 (0.80×), {dtype} compiled graph 100 (1.00×), W4 graph 150 (1.50×)") in note, note
    assert "1000" not in note, "batch 16 is not quoted"


def test_the_formats_picture_is_drawn(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"format": "BF16", "bits_per_weight": 16.0, "kl": 0.001, "tokens_per_s": 23.0},
            {"format": "W4", "bits_per_weight": 4.375, "kl": 0.3, "tokens_per_s": 44.0},
            {"format": "baseline", "bits_per_weight": 32.0, "kl": 0.0, "tokens_per_s": None}]
    assert formats.draw_formats(rows, tmp_path / "formats.png") == ["§7 formats", "Pareto front"]
    assert (tmp_path / "formats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mixed_precision_and_qat_points_join_the_picture_in_their_own_colours(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"format": "W4", "bits_per_weight": 4.375, "kl": 0.3, "tokens_per_s": 44.0, "section": 7},
            {"format": "W3/W4 plan", "bits_per_weight": 3.6, "kl": 0.2, "tokens_per_s": None, "section": 8},
            {"format": "W3 block QAT", "bits_per_weight": 3.375, "kl": 0.25, "tokens_per_s": None, "section": 9}]
    labels = formats.draw_formats(rows, tmp_path / "formats.png")
    assert labels == ["§7 formats", "§8 mixed precision", "§9 QAT", "Pareto front"], labels


def test_format_names_can_be_selected_one_by_one(monkeypatch):
    chosen = []
    monkeypatch.setattr(context.Context, "__init__", lambda self, settings: setattr(self, "settings", settings))
    monkeypatch.setattr(run, "sections", lambda ctx, quality_sections=True: chosen.append(ctx.settings.only_formats)
                        or iter(()))
    run.main(["--formats", "W8A8 naive, per-token; NF4 g64", "--out", "/dev/null", "--threads", "1"])
    assert chosen == [("W8A8 naive, per-token", "NF4 g64")], chosen


def test_the_lab_takes_its_thread_count_from_the_environment_when_set(monkeypatch):
    monkeypatch.setattr(context.Context, "__init__", lambda self, settings: setattr(self, "settings", settings))
    monkeypatch.setattr(run, "sections", lambda ctx, quality_sections=True: iter(()))
    for omp, expected in (("1", 1), ("", cpu.DEFAULT_THREADS)):
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
        run.main(["--out", "/dev/null"])
        assert torch.get_num_threads() == expected, omp


def test_a_thread_count_below_one_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        run.main(["--threads", "0"])
    assert stop.value.code == 2 and "--threads" in capsys.readouterr().err


BLOCK_FORMATS = [cls.block for cls in format_registry.FORMATS.values() if issubclass(cls, format_registry.GGUFBlocks)]


@pytest.mark.parametrize("fmt", BLOCK_FORMATS)
def test_a_block_format_linear_stores_the_formats_bytes_and_multiplies_by_their_values(fmt):
    import reference.ex5_12_gguf_formats as q512

    layer = torch.nn.Linear(128, 64, bias=False)
    block = format_registry.BlockFormatLinear(layer, q512, fmt)
    size, nbytes = q512.BLOCKS[fmt]
    assert block.data.dtype == torch.uint8 and block.data.numel() == 64 * 128 // size * nbytes, "the format's bytes"
    from kata.llama import weight_bytes

    assert weight_bytes(block) == block.data.nbytes, "only the blocks are stored"
    x = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    stored = q512.quantize_nvfp4(layer.weight.detach()) if fmt == "NVFP4" else None
    w = (q512.dequantize_nvfp4(*stored) if stored else
         getattr(q512, f"dequantize_{fmt.lower()}")(getattr(q512, f"quantize_{fmt.lower()}")(layer.weight.detach())))
    assert torch.allclose(block(x), x @ w.T, atol=1e-6), "y = x · ŵᵀ with ŵ read back from the bytes"


def speed_row(name: str, tokens_per_s: float | None) -> dict:
    return {"format": name, "bits_per_weight": 4.0, "weight_bytes": None, "ppl": 20.0, "kl": 0.1,
            "tokens_per_s": tokens_per_s, "note": ""}


@pytest.mark.parametrize(("fp32", "bf16", "yardstick"), [(30.0, 3.0, "fp32"), (30.0, 60.0, "BF16")])
def test_speeds_are_held_against_the_faster_float_model_which_the_table_names(fp32, bf16, yardstick):
    """Issue 37: on a CPU without bf16 in hardware the emulated BF16 model is no yardstick; fp32 is."""
    rows = [speed_row(formats.BASELINE, fp32), speed_row("BF16", bf16), speed_row("W4A16 RTN g64", 90.0)]
    fastest = formats.fastest_float(rows)
    assert fastest == (yardstick, max(fp32, bf16))
    table = formats.rows_table(rows, fastest)
    assert f"vs {yardstick} (fastest float)" in table
    assert f"{90.0 / max(fp32, bf16):.2f}×" in table
    assert formats.fastest_line(rows, fastest).endswith(f"{90.0 / max(fp32, bf16):.2f}× {yardstick}, the fastest "
                                                        "float path here.")


def test_without_a_timed_float_model_the_speed_column_is_empty():
    rows = [speed_row(formats.BASELINE, None), speed_row("W4A16 RTN g64", 90.0)]
    assert formats.fastest_float(rows) is None
    assert formats.fastest_line(rows, None) == ""
    assert "| — |" in formats.rows_table(rows, None)


def test_every_row_is_timed_as_deployed_whatever_dtype_its_quality_ran_in(monkeypatch):
    """Issue 37: on a CPU without bf16 (KATA_CPU=avx2) the quantized rows' quality runs in float32, but their decode
    is timed as deployed, bf16 around torch's int4 / int8 kernels."""
    import types

    from kata.llama import tiny_llama

    monkeypatch.setenv(cpu.ENV_VAR, "avx2")
    timed = []
    monkeypatch.setattr(formats, "decode_speed",
                        lambda model, prompt: timed.append(model.embed_tokens.weight.dtype) or {"tokens_per_s": 1.0})
    ctx = types.SimpleNamespace(module=lambda name: target.exercise_module("reference", name),
                                eval_ids=torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0)),
                                baseline=None, fresh_model=tiny_llama)
    w4 = format_registry.W4A16RTN(ctx, []).target_format()
    assert w4.dtype == torch.float32
    [row] = formats.measure_formats(ctx, [w4])
    assert timed == [formats.DEPLOYED_DTYPE] and row["tokens_per_s"] == 1.0
