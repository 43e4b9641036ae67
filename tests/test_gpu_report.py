"""README's GPU numbers are the ones in docs/results/: its block between the GPU markers and the lab block's GPU note
equal what kata.lab.gpu_report generates from the committed JSON.

README 的 GPU 表与实验报告里的 GPU 一行都由 docs/results/ 的 JSON 生成，这里检查一致。
"""

import json

import pytest

from kata.harness.check import expect_equal
from kata.harness.target import ROOT
from kata.lab import gpu_report

README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"


def test_readmes_gpu_block_and_lab_note_are_the_generated_ones(monkeypatch):
    monkeypatch.chdir(ROOT)  # the lab note names the folder as the command line does: docs/results/
    text = README.read_text(encoding="utf-8")
    expect_equal(text == gpu_report.refreshed(text, gpu_report.RESULTS), True,
                 "README.md against `python -m kata.lab.gpu_report --readme README.md` (run it after a benchmark)")


def test_every_committed_result_names_its_card_versions_and_date():
    for path in sorted(RESULTS.glob("*.json")):
        info = json.loads(path.read_text(encoding="utf-8"))
        missing = [key for key in ("device", "driver", "torch", "triton", "gemlite", "date") if key not in info]
        expect_equal(missing, [], f"{path.name}: keys missing")


def test_a_readme_without_the_markers_is_a_value_error():
    with pytest.raises(ValueError, match="gpu:start"):
        gpu_report.refreshed("# no markers\n", RESULTS)


def test_the_block_names_the_card_of_every_table(tmp_path):
    kernel = {"shape": "8192→8192", "K": 8192, "N": 8192, "M": 1, "device": "Card X", "driver": "1", "torch": "2",
              "triton": "3", "gemlite": None, "date": "2026-01-01", "copy_bandwidth": 3e12,
              "results": {"fp16 F.linear": {"device_us": 50.0, "weight_bytes": 2 ** 27},
                          gpu_report.W4: {"device_us": 20.0, "weight_bytes": 2 ** 25, "launch": "L"}}}
    (tmp_path / "kernel_8192x8192_m1.json").write_text(json.dumps(kernel), encoding="utf-8")
    block = gpu_report.gpu_block(tmp_path)
    expect_equal(("Card X, driver 1, torch 2, Triton 3, GemLite absent, 2026-01-01" in block, "2.50×" in block),
                 (True, True), f"the generated block:\n{block}")
