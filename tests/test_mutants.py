"""Wrong solutions must fail: each mutant is the reference with one classic mistake, graded like a learner's work.

错误的答案必须失败：每个“变异体”是参考答案加上一个典型错误，像学员的答案一样被测试。
"""

import shutil

import pytest

from kata.target import ROOT
from tests.helpers import copy_kata, run_python

MUTANTS = [  # (module, text in the reference, wrong text, the mistake)
    ("ex2_1_per_tensor", "qmax = 2 ** (num_bits - 1) - 1", "qmax = 2 ** (num_bits - 1)", "off-by-one qmax"),
    ("ex2_2_quant_error", "10 * math.log10(signal / noise)", "20 * math.log10(signal / noise)",
     "SQNR in amplitude dB"),
    ("ex5_1_granularity", "q = q.clamp(qmin, qmax).reshape(w.shape)", "q = q.reshape(w.shape)", "missing clamp"),
    ("ex5_1_granularity", "zero_point = torch.round(-lo / scale)", "zero_point = torch.round(lo / scale)",
     "wrong zero point sign"),
    ("ex5_2_int4_packing", "nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)",
     "(nibbles[..., 0::2] << 4) | nibbles[..., 1::2]", "nibbles swapped"),
    ("ex5_4_calibration", "self.H *= self.count / (self.count + m)", "pass", "streaming without rescaling"),
    ("ex5_5_awq", "D = _quantized(w.float() * s, num_bits, group_size, symmetric) / s - w.float()",
     "D = _quantized(w.float() * s, num_bits, group_size, symmetric) - w.float()", "scale not divided back out"),
    ("ex5_6_gptq", "W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]", "pass", "no error feedback"),
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return copy_kata(tmp_path_factory.mktemp("mutants"))


@pytest.mark.parametrize(("module", "right", "wrong", "mistake"), MUTANTS, ids=[m[3] for m in MUTANTS])
def test_a_classic_mistake_fails_its_exercise(sandbox, module, right, wrong, mistake):
    source = (ROOT / "reference" / f"{module}.py").read_text(encoding="utf-8")
    assert source.count(right) == 1, f"the mutant's anchor text moved in reference/{module}.py"
    (sandbox / "exercises" / f"{module}.py").write_text(source.replace(right, wrong), encoding="utf-8")
    try:
        proc = run_python("-m", "pytest", f"exercises/test_{module}.py", "-m", "not slow", "-q", "-x", cwd=sandbox)
    finally:
        shutil.copy(ROOT / "exercises" / f"{module}.py", sandbox / "exercises" / f"{module}.py")
    assert proc.returncode == 1, f"{mistake}: the tests of {module} did not catch it\n{proc.stdout[-1500:]}"
