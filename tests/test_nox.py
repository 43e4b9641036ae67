"""nox sessions that cannot do their work say why, in plain words."""

import pytest
import torch

from tests.helpers import run_python


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_without_a_gpu_says_no_cuda_device_was_found():
    proc = run_python("-m", "nox", "-s", "bench")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no CUDA device found" in proc.stdout + proc.stderr
