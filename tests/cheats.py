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
  that must not raise, bounds from the oracle's step.
"""

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


def _stub(exercise: str) -> str:
    return next((ROOT / "exercises").glob(f"{exercise}_*.py")).read_text(encoding="utf-8")


def answer_text(cheat: Cheat) -> str:
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
