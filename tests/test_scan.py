"""The answer scan (kata/harness/scan.py): the rules of the registry, read from an answer's source before it runs."""

import pytest

from kata.harness.curriculum import BY_ID, EXERCISES
from kata.harness.scan import scan_answer, scan_answer_file
from kata.harness.target import ROOT


def findings(code: str, exercise: str | None = None) -> str:
    return "\n".join(scan_answer(code, BY_ID[exercise] if exercise else None))


def test_no_stub_and_no_reference_breaks_a_rule():
    for ex in EXERCISES:
        for folder in ("exercises", "reference"):
            assert scan_answer_file(ROOT / folder / f"{ex.module}.py", ex) == [], f"{folder}/{ex.module}.py"


@pytest.mark.parametrize("code", [
    "model.eval()", "torch.compile(f)", "s = 'a'.replace('a', 'b')", "for m in model.modules(): pass",
    "x.remove(1)", "setattr(model, 'layer', layer)", "open('notes.txt').read()", "import os\nos.cpu_count()",
    "import torch\ndtype = torch.float16\nsize = dtype.itemsize", "getattr(block, name, None)",
    "super().__init__()", "type(x).__name__", "from exercises.ex2_1_per_tensor import quantize_per_tensor",
    "from kata import oracles\nfrom kata.llama import Llama\nimport kata.sequential\nkata.validate.check_num_bits(4)",
])
def test_ordinary_code_keeps_the_rules(code):
    assert scan_answer(code) == []


@pytest.mark.parametrize(("code", "named"), [
    ("import pytest", "imports pytest"), ("from _pytest import runner", "imports _pytest"),
    ("import kata.harness.plugin", "imports kata.harness.plugin"), ("from kata import grade", "imports kata.grade"),
    ("import kata.oracles as o\no.rtn = None", "patches o.rtn"), ("import torch\nsetattr(torch, 'x', 1)", "patches"),
    ("open('f', 'w')", "opens a file for writing"), ("import os\nos.remove('f')", "os.remove"),
    ("import sys\nsys.modules['x'] = None", "imports sys"), ("exec('1')", "exec()"), ("__import__('os')", "__import__"),
    ("import sys\nsys._getframe(1)", "_getframe"), ("import subprocess", "imports subprocess"),
    ("from kata import __main__", "imports kata.__main__ — 不是学员 API / not the learner API"),
    ("import kata\nkata.harness.check", "kata.harness"), ("import kata.llama\nkata.lab.formats", "kata.lab"),
    ("from exercises.test_ex2_1_per_tensor import quantize_per_tensor", "imports exercises.test_ex2_1"),
])
def test_each_obvious_forgery_is_flagged(code, named):
    assert named in findings(code)


@pytest.mark.parametrize(("code", "named"), [
    ("x = vars(y)", "uses vars()"), ("f = exec", "uses exec()"), ("g = globals()", "uses globals()"),
    ("import torch\ng = getattr\ng(torch, 'ops')", "getattr passed around"),
    ("import torch\ngetattr(torch, 'o' + 'ps')", "computed name"),
    ("x.__dict__", "touches x.__dict__"), ("type.__subclasses__(object)", "__subclasses__"),
    ("print(__builtins__)", "uses __builtins__"), ("import torch\ntorch.sys.modules", "reaches torch.sys.modules"),
    ("from kata.oracles import *", "import *"),
])
def test_dynamic_code_and_lookups_are_refused(code, named):
    assert named in findings(code)


@pytest.mark.parametrize(("code", "named"), [
    ("import torch\ntorch.ops.aten._int_mm(a, b)", "uses torch.ops.aten._int_mm"),
    ("import torch\ntorch.load('x.pt')", "uses torch.load"),
    ("from torch.utils.cpp_extension import load_inline", "uses torch.utils.cpp_extension.load_inline"),
    ("import torch\ngetattr(torch, '_C')", "uses torch._C"),
])
def test_the_backdoors_are_refused_to_every_exercise(code, named):
    assert named in findings(code) and "a door around the rules" in findings(code)


@pytest.mark.parametrize(("code", "exercise", "named"), [
    ("from kata.oracles import quantize_symmetric", "ex2_1", "uses kata.oracles.quantize_symmetric"),
    ("import kata.oracles as o\no.sqnr_db(a, b)", "ex2_2", "uses kata.oracles.sqnr_db"),
    ("import torch as t\nmm = t._int_mm", "ex5_10", "uses torch._int_mm"),
    ("import torch\nt = torch\nt._weight_int4pack_mm(a, b, 32, s)", "ex5_10", "uses torch._weight_int4pack_mm"),
    ("import torch\ngetattr(torch, '_int_mm')(a, b)", "ex5_10", "uses torch._int_mm"),
    ("import gguf", "ex5_12", "uses gguf"), ("from kata.gguf_export import encode", "ex5_12", "uses kata.gguf_export"),
    ("from kata.sequential import gram", "ex5_4", "uses kata.sequential.gram"),
    ("from kata.report import markdown_table", "ex1_2", "uses kata.report.markdown_table"),
])
def test_an_exercises_own_job_is_refused_to_it_alone(code, exercise, named):
    assert named in findings(code, exercise) and "own job" in findings(code, exercise)
    other = "ex5_6"  # GPTQ: none of these is its job
    assert "own job" not in findings(code, other)


def test_only_the_names_a_learner_api_module_defines_are_the_api():
    assert "does not define it" in findings("from kata.smollm2 import gguf")
    assert "does not define it" in findings("import kata.smollm2\nkata.smollm2.gguf.quants.quantize(x, t)")
    assert "does not define it" in findings("from kata.smollm2 import _read_gguf")
    assert findings("from kata.smollm2 import load_model") == ""


def test_a_coding_cookie_other_than_utf8_is_flagged(tmp_path):
    """Python would read the file as UTF-7 (where "+AF8-" is "_") while a scan reads UTF-8: it is never run."""
    answer = tmp_path / "ex1_1_weight_memory.py"
    answer.write_bytes(b"# -*- coding: utf-7 -*-\nimport os\n")
    assert any("coding cookie 'utf-7'" in finding for finding in scan_answer_file(answer))
    answer.write_bytes(b"# -*- coding: utf-8 -*-\nimport os\n")
    assert scan_answer_file(answer) == []
