"""README's measured results are the lab's own output, and they still agree with what the lab computes."""

import pytest

from kata import cpu
from kata.harness.curriculum import curriculum_table
from kata.harness.target import ROOT
from kata.lab import context, quality, run

pytestmark = pytest.mark.usefixtures("torch_settings")  # the tests below pin the lab's thread count


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(run.README_START) == 1 and text.count(run.README_END) == 1, "README needs one marker pair"
    return text.split(run.README_START)[1].split(run.README_END)[0]


def test_the_readme_block_is_a_whole_lab_report_of_the_reference():
    block = readme_block()
    assert block.lstrip().startswith("## quant-kata lab report — target `reference`"), block[:200]
    for number in range(1, 10):  # sections 8 and 9 come from --sensitivity and --qat, which README's block uses
        assert f"\n### {number}. " in block, f"section {number} is missing from README's lab block"
    assert "_用时 / took" in block and "not implemented" not in block


def test_the_curriculum_table_is_the_registrys():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- curriculum:start -->\n")[1].split("\n<!-- curriculum:end -->")[0]
    assert block == curriculum_table(), "README's curriculum table: regenerate it with python -m kata list --markdown"


def test_the_formats_picture_readme_shows_is_committed():
    link = readme_block().split("![formats")[1].split("](")[1].split(")")[0]
    assert (ROOT / link).is_file(), f"README shows {link}, which is not in the repository"


@pytest.mark.slow
def test_sections_1_to_5_match_a_fresh_lab_run():
    block = readme_block()
    for part in list(run.sections(context.Context(context.Settings()), quality_sections=False))[1:]:
        demoted = run.splice_readme(f"{run.README_START}{run.README_END}", part).split(run.README_START)[1]
        body = demoted.split(run.README_END)[0].strip()
        assert body in block, f"README differs from the lab for:\n{body[:300]}"


@pytest.mark.slow
def test_the_baseline_and_rtn_rows_match_a_fresh_evaluation():
    import torch

    from kata.evaluate import eval_windows, evaluate, log_probs
    from kata.oracles import round_to_nearest
    from kata.smollm2 import load_model

    torch.set_num_threads(cpu.DEFAULT_THREADS)
    ids = eval_windows()
    baseline_model = load_model()
    baseline = log_probs(baseline_model, ids)
    block = readme_block()
    assert f"| baseline (dequantized Q4_1) | — | {evaluate(baseline_model, ids)['ppl']:.2f} |" in block
    for bits in quality.QUALITY_BITS:
        model = load_model()
        round_to_nearest(model, bits, context.GROUP_SIZE)
        got = evaluate(model, ids, baseline)
        row = f"| RTN | W{bits} g{context.GROUP_SIZE} asym | {got['ppl']:.2f} | {got['kl']:.4f} |"
        assert row in block, f"README's RTN row at W{bits} should read {row}"
