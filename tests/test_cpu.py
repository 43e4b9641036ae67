"""kata.cpu: the one place that decides each CPU's paths, and the switch that forces an AVX2 laptop's answers."""

import pytest
import torch

from kata import cpu


@pytest.fixture
def bare(monkeypatch):
    """No switch set: what this machine's hardware decides."""
    monkeypatch.delenv(cpu.ENV_VAR, raising=False)
    return monkeypatch


@pytest.mark.parametrize("value", ["avx2", "AVX2"])
def test_the_switch_decides_as_an_avx2_cpu_and_says_so(bare, value):
    bare.setenv(cpu.ENV_VAR, value)
    paths = cpu.paths()
    assert (paths.float_dtype, paths.fast_int8) == (torch.float32, False)
    assert paths.why.startswith("KATA_CPU=avx2: no bf16 in hardware, float32 instead")


@pytest.mark.parametrize("value", ["", "native", "avx512"])
def test_any_other_value_leaves_the_hardwares_decision(bare, value):
    expected = cpu.paths()
    bare.setenv(cpu.ENV_VAR, value)
    assert cpu.paths() == expected


def test_without_the_switch_the_hardware_decides(bare):
    paths = cpu.paths()
    assert (paths.float_dtype == torch.bfloat16) == cpu.has_fast_bf16()
    assert paths.fast_int8 == cpu.has_fast_int8()
    assert paths.why.startswith(f"torch sees {torch.backends.cpu.get_cpu_capability()}")


@pytest.mark.parametrize(("omp", "expected"), [("3", 3), ("", cpu.DEFAULT_THREADS), ("zero", cpu.DEFAULT_THREADS)])
def test_the_thread_count_follows_omp_num_threads(bare, omp, expected):
    bare.setenv("OMP_NUM_THREADS", omp)
    assert cpu.paths().threads == expected
