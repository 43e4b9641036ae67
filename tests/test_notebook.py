"""notebooks/quant_kata_gpu.ipynb runs top to bottom: on a CPU it stops before the GPU cells with one line, on a GPU
it runs the quick benchmarks and shows this card's tables.

学员的 GPU 笔记本从头跑到尾：CPU 上在 GPU 单元前停下并只说一行；GPU 上跑快速基准并显示这块卡的表。
Needs nbclient and ipykernel (`pip install -e ".[notebook]"`); skipped without them.
"""

import pytest
import torch

from kata.harness.check import expect_equal
from kata.harness.target import ROOT

nbclient = pytest.importorskip("nbclient", reason='需要 nbclient / needs nbclient: pip install -e ".[notebook]"')
nbformat = pytest.importorskip("nbformat", reason='需要 nbformat / needs nbformat: pip install -e ".[notebook]"')
pytest.importorskip("ipykernel", reason='需要 ipykernel / needs ipykernel: pip install -e ".[notebook]"')

NOTEBOOK = ROOT / "notebooks" / "quant_kata_gpu.ipynb"
NO_GPU = "没有 CUDA GPU，下面的 GPU 单元都跳过 / no CUDA GPU: the GPU cells below are skipped"


def run_notebook(tmp_path, monkeypatch) -> list[str]:
    """Execute the notebook from the repository root (quick benchmarks, SmolLM2 shapes, results under tmp_path);
    the text each code cell printed."""
    monkeypatch.setenv("KATA_BENCH_QUICK", "1")
    monkeypatch.setenv("KATA_NOTEBOOK_K", "SmolLM2")
    monkeypatch.setenv("KATA_BENCH_DIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    return ["".join(out.get("text", "") + str(out.get("data", {}).get("text/markdown", "")) for out in cell.outputs)
            for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU 的路径 / the CPU path")
def test_on_a_cpu_the_notebook_stops_at_the_gpu_cells_with_one_line(tmp_path, monkeypatch):
    printed = run_notebook(tmp_path, monkeypatch)
    expect_equal(printed[2].strip(), NO_GPU, "the GPU cell's output on a CPU")
    expect_equal([text.strip() for text in printed[3:]], ["", "", ""], "the cells after it")


@pytest.mark.gpu
def test_on_a_gpu_the_notebook_shows_the_smollm2_decode_table(tmp_path, monkeypatch):
    printed = run_notebook(tmp_path, monkeypatch)
    expect_equal("Decode, SmolLM2-135M shapes" in printed[-1], True, f"the tables cell:\n{printed[-1][:2000]}")
