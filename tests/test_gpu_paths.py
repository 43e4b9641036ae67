"""The learner's GPU: the reference 5.10 kernels compile for a T4 (compute capability 7.5), and every GPU path takes
its dtype and kernels from the device, or from KATA_GPU.

学员的 GPU：参考 5.10 内核能为 T4（计算能力 7.5）编译；GPU 路径按设备（或 KATA_GPU）选 dtype 与内核。
The compile check uses Triton's target API (triton.compile with GPUTarget("cuda", 75, 32)): it needs Triton's
CUDA backend and its bundled ptxas, not a GPU, so it runs wherever Triton is installed.
"""

import os
import subprocess
import sys

import pytest
import torch

from kata.harness.check import expect_equal
from kata.harness.target import ROOT
from kata.timing import gpu_paths

triton = pytest.importorskip("triton", reason="5.10 的内核需要 Triton / 5.10's kernel needs Triton")


@pytest.mark.parametrize("bits", [4, 8])
def test_the_reference_kernels_compile_for_compute_capability_7_5(bits):
    env = {**os.environ, "TRITON_INTERPRET": "0"}  # compiled, not interpreted (tests/benchmarks/t4_compile.py)
    run = subprocess.run([sys.executable, "-m", "tests.benchmarks.t4_compile", str(bits)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    expect_equal(len(lines) >= 2 and all(" sm_75 " in line for line in lines), True, f"sm_75 cubins:\n{run.stdout}")


def test_kata_gpu_sm75_chooses_fp16_and_no_tinygemm_on_any_device(monkeypatch):
    monkeypatch.setenv("KATA_GPU", "sm75")
    paths = gpu_paths()
    expect_equal((paths.capability, paths.dtype, paths.tinygemm), ((7, 5), torch.float16, False), "KATA_GPU=sm75")


def test_kata_gpu_sm90_chooses_bf16(monkeypatch):
    monkeypatch.setenv("KATA_GPU", "sm90")
    expect_equal(gpu_paths().dtype, torch.bfloat16, "dtype under KATA_GPU=sm90")


def test_a_kata_gpu_that_names_no_capability_is_a_value_error(monkeypatch):
    monkeypatch.setenv("KATA_GPU", "t4")
    with pytest.raises(ValueError, match="KATA_GPU"):
        gpu_paths()


@pytest.mark.gpu
def test_on_a_gpu_the_paths_follow_the_device(monkeypatch):
    monkeypatch.delenv("KATA_GPU", raising=False)
    capability = torch.cuda.get_device_capability()
    expect_equal(gpu_paths().dtype, torch.bfloat16 if capability >= (8, 0) else torch.float16, "dtype from the device")
