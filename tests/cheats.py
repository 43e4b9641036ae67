"""The cheat catalogue tests/test_tamper.py grades: what a determined student tries, and the defence that stops it.

作弊目录：每一种都在一个 fork 里真的试一次，评分必须是零分，并写明是哪一道防线挡住的。
Each answer cheat is appended to the untouched stub of its exercise, so an honest grade is zero and any point is
the cheat's. Cheats that try to become the reference solution run its source in the answer's module when they find
it. Defences:
- scan — kata/grade/tamper.py reads the answer before it runs and refuses it (named in summary.md);
- upstream — the fork's files other than its answers are never used (named as changed files);
- boundary — the answer runs in a worker process: it cannot touch the judge's modules, frames or reports, and only
  plain data of exact types comes back (kata/grade/boundary.py);
- sandbox — the worker sees the grading tree read-only, not the upstream checkout, not the judge's files, no other
  process, no network, and dies with all its children (kata/grade/sandbox.py);
- exact — the tests themselves: exactly the exception type asked for, each bad input paired with a valid one
  that must not raise, bounds from the oracle's step; a fused op's result checked against the same op run again;
- rules — the answer rules (kata/harness/scan.py): the exercise's own job, dynamic code, the learner API;
- tripwire — the worker's tripwires on the exercise's own job (kata/grade/tripwire.py), for what the scan cannot see;
- how — the worker's checks of how the result was made (kata/harness/watch.py: 5.10's fused kernel);
- links — the fork's files are read only as regular files (kata/grade/tamper.py);
- substance — results must hold values (real tensors, finite numbers), bad-input tests pay only with the value
  tests, and expectations never come from the answer's own module;
- similarity — a copy of the public reference earns its points (nothing stops that) and is flagged to the
  instructor: it reads ≥ 0.9 (kata/grade/similarity.py).
Every cheat whose defence is not the scan is graded with the scan switched off (--skip-scan): the defence it names
stops it on its own.
"""

import ast
import base64
import builtins
import codecs
import marshal
import random
from dataclasses import dataclass, field

from kata.harness.target import ROOT


@dataclass(frozen=True)
class Cheat:
    exercise: str  # whose answer holds it ("" for a cheat outside the answers)
    code: str  # appended to that exercise's stub; for a cheat outside the answers, unused
    defence: str
    named: str = ""  # what summary.md must say, where the defence names what it found
    files: dict[str, str] = field(default_factory=dict)  # other files the fork writes
    env: dict[str, str] = field(default_factory=dict)  # the grader's environment (a CI step the fork controls)
    head: str = ""  # put before the stub (a coding cookie)
    base: str = "stub"  # "stub": code appended to the stub; "reference": the reference, `edits` made, code appended;
    # "disguised": the reference renamed, reordered and padded (the names its tests use kept)
    edits: tuple[tuple[str, str], ...] = ()  # (old, new) replacements in the reference
    links: dict[str, str] = field(default_factory=dict)  # fork path → link target ({fork}, {upstream} filled in)
    fails: tuple[str, ...] = ()  # the tests (by name) that must fail; () — every test: the cheat earns nothing
    copy: bool = False  # a copy of the reference: it earns its points, and reads ≥ 0.9 similar


def _stub(exercise: str) -> str:
    return next((ROOT / "exercises").glob(f"{exercise}_*.py")).read_text(encoding="utf-8")


def _reference(exercise: str) -> str:
    return next((ROOT / "reference").glob(f"{exercise}_*.py")).read_text(encoding="utf-8")


def answer_text(cheat: Cheat) -> str:
    if cheat.base == "disguised":
        return disguised(_reference(cheat.exercise), keep=_names_the_tests_use(cheat.exercise))
    if cheat.base == "reference":
        text = _reference(cheat.exercise)
        for old, new in cheat.edits:
            assert old in text, f"the reference no longer holds {old[:60]!r}"
            text = text.replace(old, new)
        return text + "\n" + cheat.code
    return cheat.head + _stub(cheat.exercise) + "\n" + cheat.code


# --- cheats outside the answers --------------------------------------------------------------------------------

PASS_EVERYTHING = '''
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    report.outcome, report.longrepr = "passed", None
'''

HARNESS_CHEATS = {
    "edits its test file": Cheat("", "", "upstream", "M exercises/test_ex1_1_weight_memory.py", files={
        "exercises/test_ex1_1_weight_memory.py": "def test_weight_memory():\n    pass\n"}),
    "adds a conftest.py beside the tests": Cheat("", "", "upstream", "A exercises/conftest.py", files={
        "exercises/conftest.py": PASS_EVERYTHING}),
    "edits the root conftest.py": Cheat("", "", "upstream", "M conftest.py", files={
        "conftest.py": (ROOT / "conftest.py").read_text(encoding="utf-8") + PASS_EVERYTHING}),
    "adds a pytest.ini naming a plugin": Cheat("", "", "upstream", "A pytest.ini", files={
        "pytest.ini": "[pytest]\naddopts = -p cheat\n", "cheat.py": PASS_EVERYTHING}),
    "edits pyproject.toml's addopts": Cheat("", "", "upstream", "M pyproject.toml", files={
        "pyproject.toml": (ROOT / "pyproject.toml").read_text(encoding="utf-8").replace(
            'addopts = "', 'addopts = "-p cheat '), "cheat.py": PASS_EVERYTHING}),
    "edits the kata's plugin": Cheat("", "", "upstream", "M kata/harness/plugin.py", files={
        "kata/harness/plugin.py": (ROOT / "kata/harness/plugin.py").read_text(encoding="utf-8") + PASS_EVERYTHING}),
    "adds a sitecustomize.py": Cheat("", "", "upstream (python -I)", "A sitecustomize.py", files={
        "sitecustomize.py": "import os\nos.environ['PYTEST_PLUGINS'] = 'cheat'\n", "cheat.py": PASS_EVERYTHING},
        env={"PYTHONPATH": "{fork}"}),
    "sets PYTEST_ADDOPTS, PYTEST_PLUGINS and PYTHONPATH": Cheat(
        "", "", "upstream (a clean environment)", "A cheat.py", files={"cheat.py": PASS_EVERYTHING},
        env={"PYTEST_ADDOPTS": "-p cheat", "PYTEST_PLUGINS": "cheat", "PYTHONPATH": "{fork}"}),
}

# --- cheats inside an answer -----------------------------------------------------------------------------------

# Reaches exec without naming it: the static scan sees neither.
HIDDEN_EXEC = """
import sys as _sys
from pathlib import Path as _Path

_run = getattr(vars(_sys)["modules"]["builtins"], "ex" + "ec")
"""
SILENCED_CHECKS = """
import contextlib
import sys
import types

_fake = types.ModuleType("kata.harness.check")
for _name in ("expect_close", "expect_equal", "expect_at_most", "expect_at_least", "expect_tensor",
              "expect_tensor_close", "expect_tensor_equal"):
    setattr(_fake, _name, lambda *args, **kwargs: None)
_fake.raises = lambda *args, **kwargs: contextlib.nullcontext()
vars(sys)["modules"]["kata.harness.check"] = _fake
"""
# With the checks silenced, answers that return anything at all pass: every public function returns 1234.5 (a number
# no test expects).
ANY_ANSWER = """
for _name, _value in list(vars().items()):
    if callable(_value) and getattr(_value, "__module__", None) == __name__ and not _name.startswith("_"):
        vars()[_name] = lambda *args, **kwargs: 1234.5
"""
SILENCED_SOURCE = ("import contextlib\n" + "".join(
    f"{name} = lambda *args, **kwargs: None\n" for name in (
        "expect_close", "expect_equal", "expect_at_most", "expect_at_least", "expect_tensor", "expect_tensor_close",
        "expect_tensor_equal")) + "raises = lambda *args, **kwargs: contextlib.nullcontext()\n")


def _become_reference(exercise: str, where: str) -> str:
    """Code that looks for the reference solution at `where` (an expression of a Path, `_candidates` lists them) and
    runs it in the answer's module."""
    return HIDDEN_EXEC + f"""
import os as _os

def _candidates():
    {where}

for _source in _candidates():
    try:
        _text = _source.read_text(encoding="utf-8")
    except OSError:
        continue
    _run(_text, vars())
    break
""".replace("REFERENCE", f"reference/{next((ROOT / 'reference').glob(f'{exercise}_*.py')).name}")


ANSWER_CHEATS = {
    # caught by the scan: never run (on heavy exercises, so they cost nothing to grade)
    "forges every report through pytest internals": Cheat("ex5_5", """
import _pytest.reports

_init = _pytest.reports.TestReport.__init__


def _passed(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.outcome, self.longrepr = "passed", None


_pytest.reports.TestReport.__init__ = _passed
""", "scan", "imports _pytest.reports"),
    "silences the check helpers": Cheat("ex5_6", """
import kata.harness.check

for _name in dir(kata.harness.check):
    if _name.startswith("expect"):
        setattr(kata.harness.check, _name, lambda *args, **kwargs: None)
""", "scan", "patches kata.harness.check with setattr()"),
    "rewrites its own test file": Cheat(
        "ex5_7", "from pathlib import Path\nPath(__file__).with_name('test_ex5_7_smoothquant.py').write_text('')\n",
        "scan", "calls write_text()"),
    "imports the reference solution": Cheat("ex5_8", "from reference.ex5_8_compare_formats import *  # noqa\n",
                                            "scan", "imports reference.ex5_8_compare_formats"),
    "hides its code behind a UTF-7 coding cookie": Cheat("ex5_9", "", "scan", "coding cookie 'utf-7'",
                                                         head="# -*- coding: utf-7 -*-\n"),
    "imports the grader": Cheat("ex5_10", "from kata.grade import results  # noqa\n", "scan", "imports kata.grade"),
    # no trick: loose tests to exploit
    "raises one exception class deriving from every type asked for": Cheat("ex1_1", """
class Both(TypeError, ValueError):
    pass


def bits_per_weight(*args, **kwargs):
    raise Both("dtype group_size scale_bits num_params_b NaN")


calculate_weight_memory = bits_per_weight
""", "exact"),
    "raises ValueError on every call, naming every word the tests match": Cheat("ex5_11", """
def _refuse(*args, **kwargs):
    raise ValueError("group_size num_bits groups budget_bits kl ptq_kl max_kl layer_kl target_bits NaN")


for _name, _value in list(vars().items()):
    if callable(_value) and getattr(_value, "__module__", None) == __name__ and not _name.startswith("_"):
        vars()[_name] = _refuse
""", "exact (a valid twin)"),
    # in-process forgeries no scan sees: the judge is another process
    "registers an exit handler that strips the failures from the JUnit": Cheat("ex2_1", """
import os
import re
import sys
from pathlib import Path


def _forge():
    for pid in ("self", str(os.getppid())):
        args = Path("/proc", pid, "cmdline").read_bytes().split(b"\\0")
        for arg in args:
            if arg.startswith(b"--junitxml="):
                path = Path(arg[len(b"--junitxml="):].decode())
                text = re.sub(r"<(failure|error)\\b.*?</\\1>", "", path.read_text(encoding="utf-8"), flags=re.S)
                getattr(path, "write_" + "text")(text)
                return


getattr(vars(sys)["modules"]["atexit"], "reg" + "ister")(_forge)
""", "boundary (the worker is killed, its exit handlers never run; the JUnit is the judge's)"),
    "walks __subclasses__ to patch pytest's TestReport": Cheat("ex5_1", """
_seen, _todo = set(), [object]
while _todo:
    for _sub in type.__subclasses__(_todo.pop()):
        if _sub not in _seen:
            _seen.add(_sub)
            _todo.append(_sub)
for _cls in _seen:
    if _cls.__name__ == "TestReport":
        def _passed(self, *args, _init=_cls.__init__, **kwargs):
            _init(self, *args, **kwargs)
            self.outcome, self.longrepr = "passed", None
        type.__setattr__(_cls, "__init__", _passed)
""", "boundary"),
    "silences the calling test's helpers through a traceback's frames": Cheat("ex1_2", """
def _silence_callers():
    try:
        raise LookupError
    except LookupError as error:
        frame = error.__traceback__.tb_frame
    while frame is not None:
        names = getattr(frame, "f_" + "globals")
        for name in [n for n in names if n.startswith("expect_")]:
            names[name] = lambda *args, **kwargs: None
        frame = getattr(frame, "f_" + "back")


def build_format_table(*args, **kwargs):
    _silence_callers()
    return []


def render_format_table(*args, **kwargs):
    _silence_callers()
    return ""
""", "boundary"),
    "runs base64 source through an exec found by name": Cheat("ex2_2", HIDDEN_EXEC + """
import base64

_run(base64.b64decode({payload!r}).decode(), vars())


def quantization_error(x, x_hat):
    return {{"mse": 0.0, "max_abs": 0.0, "sqnr_db": 0.0}}
""".format(payload=__import__("base64").b64encode(SILENCED_CHECKS.encode()).decode()), "boundary"),
    "starts mock.patch on the check helpers by name": Cheat("ex3_1", """
import contextlib
from unittest import mock

for _name in ("expect_close", "expect_equal", "expect_at_most", "expect_at_least", "expect_tensor",
              "expect_tensor_close", "expect_tensor_equal"):
    mock.patch("kata.harness.check." + _name, lambda *args, **kwargs: None).start()
mock.patch("kata.harness.check.raises", lambda *args, **kwargs: contextlib.nullcontext()).start()
""" + ANY_ANSWER, "boundary"),
    "makes math.isclose always true through vars(math)": Cheat("ex4_1", """
import math

vars(math)["isclose"] = lambda *args, **kwargs: True
""" + ANY_ANSWER, "boundary"),
    "returns a str subclass equal to everything": Cheat("ex3_2", """
class _Yes(str):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


def recommend_scheme(*args, **kwargs):
    return _Yes("int4")
""", "boundary (exact types)"),
    # from outside the process: the sandbox
    "reads reference/ through the editable install's finder": Cheat("ex5_2", _become_reference("ex5_2", """
    for module in list(vars(_sys)["modules"].values()):
        mapping = getattr(module, "MAPPING", None)
        if isinstance(mapping, dict) and "kata" in mapping:
            yield _Path(mapping["kata"]).parent / "REFERENCE"
"""), "sandbox (the upstream checkout is out of sight)"),
}

ANSWER_CHEATS_2 = {  # a second fork: these would collide with the first one's exercises
    "swaps the check helpers through vars(sys), no syntax the scan sees": Cheat("ex1_1", SILENCED_CHECKS + """
def bits_per_weight(*args, **kwargs):
    return 0.0


calculate_weight_memory = bits_per_weight
""", "boundary"),
    "reads reference/ through /proc/<pid>/cwd of the grader": Cheat("ex1_2", _become_reference("ex1_2", """
    for pid in _os.listdir("/proc"):
        yield _Path("/proc", pid, "cwd", "REFERENCE")
"""), "sandbox (PID namespace: no other process)"),
    "walks up from sys.executable (a venv in the checkout) to reference/": Cheat(
        "ex2_1", _become_reference("ex2_1", """
    for parent in _Path(_sys.executable).parents:
        yield parent / "REFERENCE"
"""), "sandbox (the upstream checkout is out of sight)"),
    "fetches the solution from a server on the loopback": Cheat("ex2_2", HIDDEN_EXEC + """
import socket

try:
    with socket.create_connection(("127.0.0.1", {port}), timeout=5) as _conn:
        _text = b"".join(iter(lambda: _conn.recv(65536), b"")).decode()
    _run(_text, vars())
except OSError:
    pass
""", "sandbox (no network)"),
    "a thread rewrites the judge's JUnit as it appears": Cheat("ex3_1", """
import os
import re
import threading
import time
from pathlib import Path


def _forge():
    for pid in ("self", str(os.getppid())):
        args = Path("/proc", pid, "cmdline").read_bytes().split(b"\\0")
        junit = [a[len(b"--junitxml="):].decode() for a in args if a.startswith(b"--junitxml=")]
        if junit:
            break
    path = Path(junit[0])
    while True:
        try:
            text = path.read_text(encoding="utf-8")
            if "<failure" in text or "<error" in text:
                getattr(path, "write_" + "text")(re.sub(r"<(failure|error)\\b.*?</\\1>", "", text, flags=re.S))
        except OSError:
            pass
        time.sleep(0.001)


threading.Thread(target=_forge, daemon=True).start()
""", "sandbox (the judge's files are out of sight)"),
    "a child in a new session rewrites results.json after the grader exits": Cheat("ex3_2", """
import json
import os
import time
from pathlib import Path


def _grader():
    for pid in os.listdir("/proc"):
        try:
            args = Path("/proc", pid, "cmdline").read_bytes().split(b"\\0")
        except OSError:
            continue
        if b"kata.grade" in args and b"--out" in args:
            out = Path(args[args.index(b"--out") + 1].decode())
            return pid, out if out.is_absolute() else Path("/proc", pid, "cwd").resolve() / out
    return None, None


_pid, _out = _grader()
if _pid is not None and getattr(os, "fo" + "rk")() == 0:
    os.setsid()
    while Path("/proc", _pid).exists():
        time.sleep(0.05)
    _data = json.loads((_out / "results.json").read_text(encoding="utf-8"))
    _data["quant_kata"]["score"] = _data["quant_kata"]["max_score"]
    getattr(_out / "results.json", "write_" + "text")(json.dumps(_data))
    getattr(os, "_ex" + "it")(0)
""", "sandbox (PID namespace: killed with the worker)"),
    "edits kata/harness/check.py in the tree and restores it before the hash": Cheat("ex4_1", f"""
import threading
from pathlib import Path

_check = Path(__file__).resolve().parents[1] / "kata" / "harness" / "check.py"
try:
    _original = _check.read_text(encoding="utf-8")
    getattr(_check, "write_" + "text")(_original + "\\n" + {SILENCED_SOURCE!r})
    threading.Timer(1.0, getattr(_check, "write_" + "text"), (_original,)).start()
except OSError:
    pass
""" + ANY_ANSWER, "sandbox (the tree is read-only)"),
    "adds a package that shadows kata/harness/check.py, then removes it": Cheat("ex5_1", f"""
import threading
from pathlib import Path

_package = Path(__file__).resolve().parents[1] / "kata" / "harness" / "check"
try:
    _package.mkdir()
    getattr(_package / "__init__.py", "write_" + "text")({SILENCED_SOURCE!r})
    _init = _package / "__init__.py"
    threading.Timer(1.0, lambda: (getattr(_init, "un" + "link")(), getattr(_package, "rm" + "dir")())).start()
except OSError:
    pass
""" + ANY_ANSWER, "sandbox (the tree is read-only)"),
    "edits the harness where the scan cannot see": Cheat("ex5_2", """
from pathlib import Path

p = Path(__file__).resolve().parents[1] / 'kata' / 'harness' / 'check.py'
try:
    getattr(p, 'write_' + 'text')(p.read_text() + '\\n')
except OSError:
    pass
""", "sandbox (the tree is read-only); without it, the hash after the run"),
}


# --- answers that leave the exercise undone (issue 33): delegation, hidden copies, links, no substance -----------

class _Renamed(ast.NodeTransformer):
    """Every name the file binds itself (functions, classes, arguments, variables) gets a new one; docstrings go."""

    def __init__(self, source: str) -> None:
        tree = ast.parse(source)
        imported = {(a.asname or a.name).split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        bound |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments)
                  for a in n.args + n.kwonlyargs + n.posonlyargs if a.arg not in ("self", "cls")}
        mine = sorted(bound - imported - set(dir(builtins)))
        self.names = {name: f"v{i}_{name[::-1]}" for i, name in enumerate(mine)}

    def visit_Name(self, node):
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.names.get(node.arg, node.arg)
        return node

    def visit_FunctionDef(self, node):
        node.name = self.names.get(node.name, node.name)
        node.body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))] \
            or [ast.Pass()]
        self.generic_visit(node)
        return node

    def visit_ClassDef(self, node):
        node.name = self.names.get(node.name, node.name)
        self.generic_visit(node)
        return node

    def visit_keyword(self, node):
        node.arg = self.names.get(node.arg, node.arg) if node.arg else None
        self.generic_visit(node)
        return node


def _names_the_tests_use(exercise: str) -> tuple[str, ...]:
    """What an exercise's test module imports from it, and every argument name of the reference (tests pass
    arguments by keyword): a disguised copy must keep them to still be called."""
    test = next((ROOT / "exercises").glob(f"test_{exercise}_*.py")).read_text(encoding="utf-8")
    imported = {a.name for node in ast.walk(ast.parse(test)) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("exercises.") for a in node.names}
    arguments = {a.arg for node in ast.walk(ast.parse(_reference(exercise))) if isinstance(node, ast.arguments)
                 for a in node.args + node.kwonlyargs + node.posonlyargs}
    return tuple(sorted(imported | arguments))


def disguised(source: str, keep: tuple[str, ...] = ()) -> str:
    """The source renamed (but `keep`: the names the tests import), its definitions reordered, padded with a dead
    data table and dead functions."""
    renamer = _Renamed(source)
    for name in keep:
        renamer.names.pop(name, None)
    tree = renamer.visit(ast.parse(source))
    heads = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    last = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.ClassDef))}  # as Python keeps them
    definitions = list(last.values())
    tree.body = [s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.ClassDef)) or last[s.name] is s]
    statements = [s for s in tree.body if s not in heads and s not in definitions]  # their order matters
    random.Random(0).shuffle(definitions)
    rest = statements + [s for s in definitions if not isinstance(s, ast.ClassDef)] + \
        [s for s in definitions if isinstance(s, ast.ClassDef)]
    padding = ast.parse("TABLE = " + repr(list(range(5000))) + "\n\n" + "\n\n".join(
        f"def unused_{i}(a, b):\n    c = [a * k + b for k in range({i + 2})]\n    return sum(c) / len(c)"
        for i in range(30)))
    tree.body = heads + padding.body + rest
    return ast.unparse(ast.fix_missing_locations(tree))


_KERNEL_TESTS = ("test_the_kernel_equals", "test_leading_dimensions", "test_one_program_along_k",
                 "test_quantized_matmul_is_your_fused_kernel", "test_kernel_linear_runs_the_kernel")
_DEQUANTIZED = '''
def _dequantized(weights):
    """ŵ (K, N) float32 from the packed words, in torch."""
    k, n = weights.shape
    if weights.num_bits == 8:
        return weights.qweight.float() * weights.scales.float()
    words = weights.qweight.long() & 0xFFFFFFFF
    codes = torch.stack([(words >> (4 * i)) & 0xF for i in range(8)], dim=1).reshape(k, n).float()
    g = weights.group_size
    return (codes - weights.zeros.float().repeat_interleave(g, 0)) * weights.scales.float().repeat_interleave(g, 0)
'''
_QM_TAIL = "    return _run(_launch(rows, weights), rows, weights).reshape(*x.shape[:-1], N)"
_REFERENCE_DATA = base64.b64encode(_reference("ex1_1").encode()).decode()

HOW_CHEATS = {
    # delegation: the job done by code the learner did not write
    "5.12 by the installed gguf package's own quantizers": Cheat("ex5_12", """
import gguf as _gguf


def quantize_q8_0(x):
    return torch.from_numpy(_gguf.quantize(x.float().numpy(), _gguf.GGMLQuantizationType.Q8_0))
""", "scan", "uses gguf"),
    "2.1 as glue around kata.oracles": Cheat("ex2_1", """
from kata.oracles import dequantize_symmetric, quantize_symmetric


def quantize_per_tensor(x, num_bits=8):
    q, scale = quantize_symmetric(x, num_bits)
    return q.to(torch.int8), scale


def dequantize_per_tensor(q, scale):
    return dequantize_symmetric(q, scale)
""", "scan", "uses kata.oracles.dequantize_symmetric"),
    "2.2 reaches kata.oracles.sqnr_db through a name the scan cannot resolve": Cheat("ex2_2", """
import kata

_k = [kata][0]


def quantization_error(x, x_hat):
    d = (x.float() - x_hat.float())
    return {"mse": float((d * d).mean()), "max_abs": float(d.abs().max()), "sqnr_db": _k.oracles.sqnr_db(x, x_hat)}
""", "tripwire"),
    "5.12 reaches kata.gguf_export's encoder through a name the scan cannot resolve": Cheat("ex5_12", """
import kata

_k = [kata][0]


def quantize_q8_0(x):
    return torch.from_numpy(_k.gguf_export.grid_blocks(x.float(), "Q8_0").copy()).reshape(*x.shape[:-1], -1)
""", "tripwire"),
    "5.4 builds its Hessian with kata.sequential's Gram helper": Cheat("ex5_4", """
from kata.sequential import gram


def hessian(x):
    x = x.reshape(-1, x.shape[-1]).double()
    return 2 * gram(x) / x.shape[0]
""", "scan", "uses kata.sequential.gram"),
    "5.10 dequantizes, then multiplies in torch": Cheat(
        "ex5_10", _DEQUANTIZED, "how", base="reference", fails=_KERNEL_TESTS,
        edits=((_QM_TAIL, "    return (rows.float() @ _dequantized(weights)).to(x.dtype).reshape(*x.shape[:-1], N)"),)),
    "5.10 multiplies in torch and copies the product out with a kernel of its own": Cheat("ex5_10", _DEQUANTIZED + '''

@triton.jit
def _copy(src_ptr, dst_ptr, w_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=offs < n), mask=offs < n)


def _copied_out(rows, weights):
    y = (rows.float() @ _dequantized(weights)).to(rows.dtype)
    out = torch.empty_like(y)
    _copy[(triton.cdiv(y.numel(), 256),)](y, out, weights.qweight, y.numel(), BLOCK=256)
    return out
''', "how", base="reference", fails=_KERNEL_TESTS,
        edits=((_QM_TAIL, "    return _copied_out(rows, weights).reshape(*x.shape[:-1], N)"),)),
    "5.10's KernelLinear answers with the layer's own forward": Cheat(
        "ex5_10", "", "how", base="reference", fails=("test_kernel_linear_runs_the_kernel",),
        edits=(("        if not triton_runs(x):\n", "        if True:\n"),
               ("            warnings.warn(", "            None and warnings.warn("))),
    "5.3 calls the fused kernel on a zero row and answers with dequantize-then-matmul": Cheat("ex5_3", "", "exact",
        base="reference", fails=("test_the_bf16_output_is_the_fused_kernels_own_result",), edits=((
            "        if self.bias is not None:\n            y = y + self.bias.to(y.dtype)\n"
            "        return y.reshape(*x.shape[:-1], self.out_features)",
            "        del y\n        return F.linear(x, self.dequantized_weight().to(x.dtype),\n"
            "                        None if self.bias is None else self.bias.to(x.dtype))"),
            ("        rows = x.reshape(-1, self.in_features)\n        weight, scales",
             "        rows = torch.zeros_like(x.reshape(-1, self.in_features)[:1])\n        weight, scales"))),
    "5.3 finds calls_to's counter with gc and bumps it": Cheat("ex5_3", """
import gc as _gc

for _spy in [o for o in _gc.get_objects() if type(o).__name__ in ("Spy", "OpSpy")]:
    _spy.calls.append(None)
""", "scan", "imports gc"),
    # a copy of the reference, hidden from the similarity figure
    "the reference from base64 through an exec reached by vars()": Cheat("ex1_1", f"""
import base64 as _b64

vars(__builtins__)["ex" + "ec"](_b64.b64decode({_REFERENCE_DATA!r}).decode(), globals())
""", "scan", "uses vars()"),
    "a marshalled code object of the reference wrapped by types.FunctionType": Cheat("ex1_2", f"""
import marshal as _marshal
import types as _types

_code = _marshal.loads(__import__("base64").b64decode({base64.b64encode(marshal.dumps(compile(
    _reference("ex1_2"), "r", "exec"))).decode()!r}))
_types.FunctionType(_code, globals())()
""", "scan", "imports marshal"),
    "rot13 text of the reference compiled by codeop": Cheat("ex3_1", f"""
import codecs as _codecs
import codeop as _codeop

_run = _codeop.compile_command(_codecs.decode({codecs.encode(_reference("ex3_1"), "rot13")!r}, "rot13"),
                               symbol="exec")
""", "scan", "imports codeop"),
    "the reference plus a large dead data table": Cheat(
        "ex3_2", "DEAD = " + repr([[i * j % 97 for j in range(64)] for i in range(400)]) + "\n", "similarity",
        base="reference", copy=True),
    "the reference renamed, its definitions reordered, padded with dead code": Cheat(
        "ex4_1", "", "similarity", base="disguised", copy=True),
    # points without substance
    "2.1 validates its input and returns meta tensors": Cheat("ex2_1", """
from kata.validate import check_float_tensor, check_num_bits


def quantize_per_tensor(x, num_bits=8):
    check_float_tensor(x)
    check_num_bits(num_bits)
    return torch.empty(x.shape, dtype=torch.int8, device="meta"), torch.empty((), device="meta")


def dequantize_per_tensor(q, scale):
    return torch.empty(q.shape, device="meta")
""", "substance"),
    "2.1 validates its input and returns codes with a NaN scale": Cheat("ex2_1", """
from kata.validate import check_float_tensor, check_num_bits


def quantize_per_tensor(x, num_bits=8):
    check_float_tensor(x)
    check_num_bits(num_bits)
    return torch.zeros(x.shape, dtype=torch.int8), torch.tensor(float("nan"))


def dequantize_per_tensor(q, scale):
    return q.float() * float("nan")
""", "substance"),
    "5.11 plans nothing and agrees with its own emptied constants": Cheat("ex5_11", """
KINDS, OPTIONS = (), ()


def layer_bytes(out_features, in_features, num_bits, group_size):
    return 0


def plan_bits(plan, shapes):
    return 0.0


def plan_precision(kl, shapes, budget_bits, options=OPTIONS):
    return {}


def linear_shapes(model):
    return {}
""", "substance"),
    "5.8 returns rows with no keys and agrees with its own emptied FORMAT_KEYS": Cheat("ex5_8", """
FORMAT_KEYS = ()


def compare_formats(load_model, formats, ids, *, baseline=None, speed=None, progress=print):
    return [{} for _ in formats]
""", "substance"),
}

LINK_CHEATS = {
    "an answer linked to /proc/self/cwd/reference/": Cheat(
        "ex1_1", "", "links", "the answer file is not read",
        links={"exercises/ex1_1_weight_memory.py": "/proc/self/cwd/reference/ex1_1_weight_memory.py"}),
    "an answer linked into the instructor's checkout beside the fork": Cheat(
        "ex2_1", "", "links", "the answer file is not read",
        links={"exercises/ex2_1_per_tensor.py": "{upstream}/reference/ex2_1_per_tensor.py"}),
    "README.md linked to /dev/zero": Cheat("", "", "links", "M README.md (符号链接 / a symbolic link)",
                                           links={"README.md": "/dev/zero"}),
}
LINKED_FOLDER = Cheat("ex1_1", "", "links", "the answer file is not read",
                      links={"exercises": "{upstream}/reference"})  # every answer at once: a fork of its own
