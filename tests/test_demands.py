"""Every demand a graded test makes is written in the stub the learner reads (tests/demands.py says how)."""

import pytest

from kata.harness.curriculum import BY_ID, EXERCISES
from kata.harness.target import ROOT
from tests.demands import rules_unstated, unpaired, unstated


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.id for ex in EXERCISES])
def test_every_demand_of_the_tests_is_stated_in_the_stub(ex):
    missing = unstated(ROOT / "exercises" / f"{ex.module}.py", ROOT / ex.test_file)
    assert not missing, f"exercises/{ex.module}.py does not state:\n  " + "\n  ".join(missing)


def test_a_declared_demand_must_be_in_the_stub(tmp_path):
    stub, test = tmp_path / "ex9_9_planted.py", tmp_path / "test_ex9_9_planted.py"
    stub.write_text('"""9.9 — planted: scale may come as float16."""\n', encoding="utf-8")
    test.write_text('import pytest\n\n\n@pytest.mark.demands("float32 scale")\ndef test_f():\n    pass\n',
                    encoding="utf-8")
    assert [m.split(" ", 1)[1] for m in unstated(stub, test)] == ["expects the text 'float32 scale'"]
    stub.write_text('"""9.9 — planted: scale may come as float16 or a float32 scale."""\n', encoding="utf-8")
    assert unstated(stub, test) == []


def test_a_planted_unstated_demand_is_caught(tmp_path):
    stub, test = tmp_path / "ex9_9_planted.py", tmp_path / "test_ex9_9_planted.py"
    stub.write_text('"""9.9 — planted.\n\n坏输入 / bad input: x 为空 → ValueError.\n"""\n\n\ndef f(x, y):\n'
                    '    """f."""\n', encoding="utf-8")
    test.write_text("import re\n\nimport pytest\n\n\ndef test_f(said):\n"
                    "    with pytest.raises(TypeError, match=r'\\by\\b'):\n        f(1, 2)\n"
                    "    assert '(1/3)' in said[0] and 'done' in said[1] and '0.15' in said[2]\n"
                    "    assert re.search(r'\\bfloat32\\b', said[3])\n", encoding="utf-8")
    missing = unstated(stub, test)
    assert [m.split(" ", 1)[1] for m in missing] == [
        "raises … 'TypeError' (not in a 'bad input' paragraph)", "raises … 'y' (not in a 'bad input' paragraph)",
        "counts '(1/3)' (the stub never shows the form (i/n))", "expects the text 'done'",
        "expects the text 'float32'"], missing
    stub.write_text('"""9.9 — planted. Progress lines count (i/n); the last says "done" and "float32".\n\n'
                    '坏输入 / bad input: x 为空 → ValueError; y 不对 → TypeError. every message names the argument.\n'
                    '"""\n\n\ndef f(x, y):\n    """f."""\n', encoding="utf-8")
    assert unstated(stub, test) == [], "the same demands, stated"


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.id for ex in EXERCISES])
def test_every_bad_input_is_paired_with_a_valid_call(ex):
    lines = unpaired((ROOT / ex.test_file).read_text(encoding="utf-8"))
    assert not lines, f"{ex.test_file}: bad input without raises(..., valid=...) on lines {lines}"


def test_an_unpaired_bad_input_is_caught():
    source = ("def test_x():\n    with raises(ValueError, match='x', valid=lambda: f(1)):\n        f(0)\n"
              "    with raises(ValueError, match='x'):\n        f(0)\n"
              "    with pytest.raises(ValueError):\n        f(0)\n")
    assert unpaired(source) == [4, 6]


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.id for ex in EXERCISES])
def test_every_answer_rule_is_stated_in_the_stub(ex):
    missing = rules_unstated(ex, ROOT / "exercises" / f"{ex.module}.py")
    assert not missing, f"exercises/{ex.module}.py does not state: {missing}"


def test_a_rule_left_out_of_a_stub_is_caught(tmp_path):
    stub = tmp_path / "ex5_10.py"
    stub.write_text('"""5.10 — a kernel. python -m kata rules ex5_10; may not use torch._int_mm."""\n',
                    encoding="utf-8")
    missing = rules_unstated(BY_ID["ex5_10"], stub)
    assert "its own job torch._weight_int8pack_mm" in missing and any("fused_kernel" in m for m in missing)
    assert "its own job torch._int_mm" not in missing
