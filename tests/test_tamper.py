"""A fork cannot buy a grade: each kind of cheat, planted in a copy of the kata, leaves the grade at zero and is
named in the summary. The fork's ex1_1 is the untouched stub throughout, so every honest point would be zero."""

import json

import pytest

from kata.grade.tamper import build_grading_tree, changed_files, fork_changes, scan_answer, scan_answer_file
from kata.harness.target import ROOT
from tests.helpers import copy_checkout, grade_fork

STUB = (ROOT / "exercises/ex1_1_weight_memory.py").read_text(encoding="utf-8")
# A pytest plugin that turns every failure into a pass: what most cheats below try to get loaded.
PASS_EVERYTHING = '''
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    report.outcome, report.longrepr = "passed", None
'''
HARNESS_CHEATS = {  # cheat → (files the fork writes, extra environment, what the summary must name)
    "edits its test file": ({"exercises/test_ex1_1_weight_memory.py": "def test_weight_memory():\n    pass\n"},
                            {}, "M exercises/test_ex1_1_weight_memory.py"),
    "adds a conftest.py beside the tests": ({"exercises/conftest.py": PASS_EVERYTHING}, {}, "A exercises/conftest.py"),
    "edits the root conftest.py": ({"conftest.py": (ROOT / "conftest.py").read_text() + PASS_EVERYTHING}, {},
                                   "M conftest.py"),
    "adds a pytest.ini naming a plugin": ({"pytest.ini": "[pytest]\naddopts = -p cheat\n", "cheat.py": PASS_EVERYTHING},
                                          {}, "A pytest.ini"),
    "edits pyproject.toml's addopts": ({"pyproject.toml": (ROOT / "pyproject.toml").read_text().replace(
        'addopts = "', 'addopts = "-p cheat '), "cheat.py": PASS_EVERYTHING}, {}, "M pyproject.toml"),
    "edits the kata's plugin": ({"kata/harness/plugin.py": (ROOT / "kata/harness/plugin.py").read_text()
                                 + PASS_EVERYTHING}, {}, "M kata/harness/plugin.py"),
    "adds a sitecustomize.py": ({"sitecustomize.py": "import os\nos.environ['PYTEST_PLUGINS'] = 'cheat'\n",
                                 "cheat.py": PASS_EVERYTHING}, {"PYTHONPATH": "{fork}"}, "A sitecustomize.py"),
    "sets PYTEST_ADDOPTS, PYTEST_PLUGINS and PYTHONPATH": ({"cheat.py": PASS_EVERYTHING}, {
        "PYTEST_ADDOPTS": "-p cheat", "PYTEST_PLUGINS": "cheat", "PYTHONPATH": "{fork}"}, "A cheat.py"),
}
FORGE_REPORTS = """
import _pytest.reports

_init = _pytest.reports.TestReport.__init__


def _passed(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.outcome, self.longrepr = "passed", None


_pytest.reports.TestReport.__init__ = _passed
"""
SILENCE_CHECKS = """
import kata.harness.check

for _name in dir(kata.harness.check):
    if _name.startswith("expect"):
        setattr(kata.harness.check, _name, lambda *args, **kwargs: None)


def bits_per_weight(*args, **kwargs):
    return 0.0


def calculate_weight_memory(*args, **kwargs):
    return 0.0
"""
ANSWER_CHEATS = {  # cheat → (what the answer module adds to the stub, what the summary must name)
    "forges every report through pytest internals": (FORGE_REPORTS, "imports _pytest.reports"),
    "silences the check helpers": (SILENCE_CHECKS, "patches kata.harness.check with setattr()"),
    "rewrites its own test file": (
        "from pathlib import Path\nPath(__file__).with_name('test_ex1_1_weight_memory.py').write_text('')\n",
        "calls write_text()"),
    "imports the reference solution": ("from reference.ex1_1_weight_memory import *  # noqa\n",
                                       "imports reference.ex1_1_weight_memory"),
    # Hidden from the static scan: caught after the run, because the grading tree's harness changed.
    "edits the harness where the scan cannot see": (
        "from pathlib import Path\np = Path(__file__).resolve().parents[1] / 'kata' / 'harness' / 'check.py'\n"
        "getattr(p, 'write_' + 'text')(p.read_text() + '\\n')\n", "modified kata/harness/check.py"),
}


def _grade(tmp_path, files: dict[str, str], env: dict[str, str]) -> tuple[dict, str]:
    fork = copy_checkout(tmp_path / "fork")
    for rel, text in files.items():
        (fork / rel).write_text(text, encoding="utf-8")
    env = {key: value.format(fork=fork) for key, value in env.items()}
    proc = grade_fork(fork, tmp_path / "out", "--only", "ex1_1", "--timeout", "120", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "out/results.json").read_text(encoding="utf-8"))
    return data, (tmp_path / "out/summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("cheat", HARNESS_CHEATS)
def test_a_cheat_outside_the_answers_earns_nothing_and_is_named(tmp_path, cheat):
    files, env, named = HARNESS_CHEATS[cheat]
    data, summary = _grade(tmp_path, files, env)
    assert data["quant_kata"]["score"] == 0, f"{cheat}: scored {data['quant_kata']['score']}"
    assert data["quant_kata"]["exercises"][0]["total"] > 1, "upstream's tests must have run"
    assert f"`{named}`" in summary, summary


@pytest.mark.parametrize("cheat", ANSWER_CHEATS)
def test_a_cheat_inside_an_answer_scores_zero_and_is_named(tmp_path, cheat):
    code, named = ANSWER_CHEATS[cheat]
    data, summary = _grade(tmp_path, {"exercises/ex1_1_weight_memory.py": STUB + "\n" + code}, {})
    assert data["quant_kata"]["score"] == 0, f"{cheat}: scored {data['quant_kata']['score']}"
    assert named in summary and "🚫" in summary, summary


ONE_EXCEPTION_FOR_ALL = """
class Both(TypeError, ValueError):
    pass


def bits_per_weight(*args, **kwargs):
    raise Both("dtype group_size scale_bits num_params_b NaN")


calculate_weight_memory = bits_per_weight
"""


def test_one_exception_class_deriving_from_every_type_asked_for_earns_nothing(tmp_path):
    """No trick, only loose tests to exploit: it passed every bad-input test while pytest.raises took subclasses."""
    data, _ = _grade(tmp_path, {"exercises/ex1_1_weight_memory.py": STUB + "\n" + ONE_EXCEPTION_FOR_ALL}, {})
    assert data["quant_kata"]["score"] == 0, f"scored {data['quant_kata']['score']}"


UNSEEN_FORGERY = """
import contextlib
import sys
import types

_fake = types.ModuleType("kata.harness.check")
for _name in ("expect_close", "expect_equal", "expect_at_most", "expect_at_least", "expect_tensor",
              "expect_tensor_close", "expect_tensor_equal"):
    setattr(_fake, _name, lambda *args, **kwargs: None)
_fake.raises = lambda *args, **kwargs: contextlib.nullcontext()
vars(sys)["modules"]["kata.harness.check"] = _fake


def bits_per_weight(*args, **kwargs):
    return 0.0


calculate_weight_memory = bits_per_weight
"""


def test_a_forgery_the_scan_cannot_see_earns_nothing_across_the_boundary(tmp_path):
    """It swaps the check helpers for no-ops through vars(sys) (no syntax the scan looks for): in the judging
    process 17 of 1.1's 18 tests passed; the answer now runs in a worker, whose sys.modules is its own."""
    assert scan_answer(UNSEEN_FORGERY) == [], "the scan does not see it: the boundary must stop it"
    data, summary = _grade(tmp_path, {"exercises/ex1_1_weight_memory.py": STUB + "\n" + UNSEEN_FORGERY}, {})
    assert data["quant_kata"]["score"] == 0, f"scored {data['quant_kata']['score']}"
    assert "🚫" not in summary, "nothing to flag: it simply cannot reach the judge"


def test_an_honest_fork_is_graded_in_full_and_nothing_is_listed(tmp_path):
    solution = (ROOT / "reference/ex1_1_weight_memory.py").read_text(encoding="utf-8")
    data, summary = _grade(tmp_path, {"exercises/ex1_1_weight_memory.py": solution}, {})
    assert data["quant_kata"]["score"] == data["quant_kata"]["max_score"] > 0
    assert data["quant_kata"]["changed_outside_answers"] == [] and "🚫" not in summary


def test_no_stub_and_no_reference_looks_like_a_forgery():
    for path in sorted((ROOT / "exercises").glob("ex*.py")) + sorted((ROOT / "reference").glob("ex*.py")):
        assert scan_answer(path.read_text(encoding="utf-8")) == [], path.name


@pytest.mark.parametrize("code", [
    "model.eval()", "torch.compile(f)", "s = 'a'.replace('a', 'b')", "for m in model.modules(): pass",
    "x.remove(1)", "setattr(model, 'layer', layer)", "open('notes.txt').read()", "import os\nos.cpu_count()",
])
def test_ordinary_code_is_not_flagged(code):
    assert scan_answer(code) == []


@pytest.mark.parametrize(("code", "named"), [
    ("import pytest", "imports pytest"), ("from _pytest import runner", "imports _pytest"),
    ("import kata.harness.plugin", "imports kata.harness.plugin"), ("from kata import grade", "imports kata.grade"),
    ("import kata.oracles as o\no.rtn = None", "patches o.rtn"), ("import torch\nsetattr(torch, 'x', 1)", "patches"),
    ("open('f', 'w')", "opens a file for writing"), ("import os\nos.remove('f')", "os.remove"),
    ("import sys\nsys.modules['x'] = None", "sys.modules"), ("exec('1')", "exec()"), ("__import__('os')", "__import__"),
    ("import sys\nsys._getframe(1)", "_getframe"), ("import subprocess", "imports subprocess"),
])
def test_each_obvious_forgery_is_flagged(code, named):
    assert any(named in finding for finding in scan_answer(code)), scan_answer(code)


def test_fork_changes_lists_changed_added_and_removed_files_but_not_answers(tmp_path):
    upstream, fork = tmp_path / "up", tmp_path / "fork"
    for root in (upstream, fork):
        (root / "exercises").mkdir(parents=True)
        (root / "exercises/ex1_1_weight_memory.py").write_text(f"# {root.name}\n")
        (root / "kept.py").write_text("same\n")
    (upstream / "changed.py").write_text("1\n")
    (fork / "changed.py").write_text("2\n")
    (upstream / "removed.py").write_text("\n")
    (fork / "exercises/conftest.py").write_text("\n")
    (fork / ".git").mkdir()
    (fork / ".git/HEAD").write_text("ref\n")
    assert fork_changes(fork, upstream) == ["M changed.py", "A exercises/conftest.py", "D removed.py"]


def test_a_coding_cookie_other_than_utf8_is_flagged(tmp_path):
    """Python would read the file as UTF-7 (where "+AF8-" is "_") while a scan reads UTF-8: it is never run."""
    answer = tmp_path / "ex1_1_weight_memory.py"
    answer.write_bytes(b"# -*- coding: utf-7 -*-\nimport os\n")
    assert any("coding cookie 'utf-7'" in finding for finding in scan_answer_file(answer))
    answer.write_bytes(b"# -*- coding: utf-8 -*-\nimport os\n")
    assert scan_answer_file(answer) == []


@pytest.mark.parametrize(("code", "named"), [
    ("from kata.grade import run", "imports kata.grade"),
    ("from kata import __main__", "imports kata.__main__ — 不是学员 API / not the learner API"),
    ("import kata\nkata.harness.check", "touches kata.harness"),
    ("import kata.llama\nkata.lab.formats", "touches kata.lab"),
])
def test_kata_is_imported_only_through_the_learner_api(code, named):
    assert any(named in finding for finding in scan_answer(code)), scan_answer(code)


def test_the_learner_api_is_not_flagged():
    assert scan_answer("from kata import oracles\nfrom kata.llama import Llama\nimport kata.sequential\n"
                       "kata.validate.check_num_bits(4)") == []


def test_a_file_added_to_the_grading_tree_is_a_change(tmp_path):
    tree = tmp_path / "tree"
    expected = build_grading_tree(ROOT, ROOT, tree)
    assert changed_files(tree, expected) == []
    (tree / "kata" / "harness" / "checks.py").write_text("shadow = True\n")
    assert changed_files(tree, expected) == ["添加 / added kata/harness/checks.py"]
