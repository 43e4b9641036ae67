"""Triton's CPU interpreter holds tl.dot to the NVIDIA rule (kata/harness/dot_rule.py): a dot a GPU refuses to
compile fails on the CPU too, with words that say why."""

import os

import pytest
import torch

triton = pytest.importorskip("triton", reason='需要 Triton / needs Triton: pip install -e ".[kernel]" (Linux)')

from kata.harness.dot_rule import nvidia_dot_rule  # noqa: E402
from tests.helpers import load_file  # noqa: E402

KERNEL = '''
import triton
import triton.language as tl


@triton.jit
def dot(a_ptr, b_ptr, c_ptr, K: tl.constexpr):
    m, n, k = tl.arange(0, 16), tl.arange(0, 16), tl.arange(0, K)
    a = tl.load(a_ptr + m[:, None] * K + k[None, :])
    b = tl.load(b_ptr + k[:, None] * 16 + n[None, :])
    tl.store(c_ptr + m[:, None] * 16 + n[None, :], tl.dot(a, b))
'''


@pytest.fixture
def interpreted_dot(tmp_path, monkeypatch):
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("这个规则只用于 CPU 解释器 / the rule is for the CPU interpreter")
    if not nvidia_dot_rule():
        pytest.skip(f"这个 Triton 没有给解释器装规则的地方 / this Triton ({triton.__version__}) has no hook for it")
    (tmp_path / "dot_kernel.py").write_text(KERNEL, encoding="utf-8")
    module = load_file(tmp_path / "dot_kernel.py", "kata_test_dot_kernel")

    def run(k: int) -> torch.Tensor:
        a, b = torch.ones(16, k, dtype=torch.float16), torch.ones(k, 16, dtype=torch.float16)
        c = torch.empty(16, 16, dtype=torch.float32)
        module.dot[(1,)](a, b, c, K=k)
        return c
    return run


def test_a_dot_sixteen_deep_in_half_precision_runs(interpreted_dot):
    assert torch.equal(interpreted_dot(16), torch.full((16, 16), 16.0))


def test_a_dot_eight_deep_in_half_precision_fails_saying_why(interpreted_dot):
    with pytest.raises(Exception, match="at least 16 for 16-bit inputs on NVIDIA GPUs, this one is 8"):
        interpreted_dot(8)
