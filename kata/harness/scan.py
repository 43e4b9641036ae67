"""The answer scan: what an answer file may not do, read from its source before it ever runs.

答案扫描：运行之前先读源码。答案只能导入允许的模块和学员 API；不能借用本练习自己的工作（5.1 不能调用
kata.oracles 的分组规则，5.12 不能调用 gguf）；不能动态执行代码、动态查找属性、碰解释器内部、改写别的模块、
写文件或起进程。学员自测和评分用同一个扫描，给出同样的一行说明。
The learner's self-check (kata/harness/plugin.py) and the grader (kata/grade/run.py) run this same scan and print
the same line for each finding. The rules come from the registry (kata/harness/curriculum.py):
- imports: only ANSWER_MODULES, and of kata only the LEARNER_API; no `import *`;
- every name the code reaches through an import (aliases, attribute chains, `getattr(module, "name")`,
  `from m import name`) is resolved to its dotted path and checked against BACKDOORS, the exercise's own job and
  what the learner API defines (kata.smollm2 imports gguf; `kata.smollm2.gguf` is not API);
- dynamic code and lookups: exec / eval / compile / __import__ / vars / globals / locals, getattr on a module with a
  computed name or passed around, dunder attributes beyond a few harmless ones, interpreter internals;
- side effects: patching another module's attributes, writing or deleting files, processes.
What the scan cannot see (calls made inside torch or inside the learner API) the grader checks around each call.
"""

from __future__ import annotations

import ast
import functools
import io
import tokenize
from pathlib import Path

from kata.harness import syntax
from kata.harness.curriculum import ANSWER_MODULES, BACKDOORS, LEARNER_API, Exercise

KATA = Path(__file__).resolve().parents[1]
DYNAMIC = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint"}  # any reference
# Modules that must not be reached as an attribute of an allowed one (torch.sys.modules, numpy.ctypeslib…).
HIDDEN_MODULES = {"sys", "builtins", "importlib", "gc", "inspect", "ctypes", "subprocess", "marshal", "pickle",
                  "types", "codeop", "code", "runpy", "shutil", "socket", "threading", "multiprocessing", "signal",
                  "atexit", "pytest", "_pytest", "pluggy"}
SAFE_DUNDERS = {"__init__", "__name__", "__qualname__", "__doc__", "__class__", "__call__", "__post_init__",
                "__len__", "__file__"}
PATH_WRITES = {"write_text", "write_bytes", "unlink", "rmdir", "touch", "symlink_to", "hardlink_to"}
OS_CALLS = {"remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "system", "popen", "kill",
            "killpg", "truncate", "chmod", "open", "write", "fork", "execv", "execve", "execvp", "spawnv", "putenv",
            "mkdir", "makedirs", "symlink", "link", "setsid", "_exit"}
INTERPRETER_ATTRIBUTES = {"_getframe", "settrace", "setprofile", "f_back", "f_globals", "f_locals", "f_builtins",
                          "tb_frame", "gi_frame", "cr_frame", "co_code", "co_consts"}
REASONS = {
    "module": "答案不能导入它 / not among the modules an answer may import",
    "api": "不是学员 API / not the learner API",
    "star": "请写出用到的名字 / name what you use",
    "backdoor": "绕过规则的后门 / a door around the rules",
    "own": "这正是本练习要你自己写的 / this is the exercise's own job",
    "dynamic": "动态执行或动态查找 / dynamic code or a dynamic lookup",
    "interpreter": "解释器内部 / the interpreter's internals",
    "patch": "改写别的模块 / patching another module",
    "files": "文件或进程 / files or processes",
}


def _matches(symbol: str, rule: str) -> bool:
    return symbol == rule or symbol.startswith(rule + ".")


@functools.cache
def api_names(module: str) -> frozenset[str]:
    """The public names kata/<module>.py defines itself (functions, classes, constants): its part of the API."""
    tree = syntax.parse((KATA / f"{module}.py").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return frozenset(n for n in names if not n.startswith("_"))


def _dotted(node: ast.expr) -> str:
    """'a.b.c' for a chain of names and attributes, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _writes(call: ast.Call) -> bool:
    """open(path, mode) with a mode that writes, appends, creates or updates (or a mode it cannot read)."""
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None:
        return False
    return not (isinstance(mode, ast.Constant) and isinstance(mode.value, str) and not set(mode.value) & set("wax+"))


class _Scan(ast.NodeVisitor):
    """One pass over an answer: `found` collects (line, finding) pairs."""

    def __init__(self, tree: ast.Module, own_job: tuple[str, ...]) -> None:
        self.own_job, self.found = own_job, set()
        self.aliases: dict[str, str] = {}  # local name → the dotted path it was imported (or assigned) as
        self.parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):  # `t = torch._int_mm`: an alias too (flow-insensitive)
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                resolved = self.resolve(node.value)
                if resolved:
                    self.aliases.setdefault(node.targets[0].id, resolved)

    def flag(self, node: ast.AST, what: str, reason: str) -> None:
        self.found.add((getattr(node, "lineno", 0), f"{what} — {REASONS[reason]}"))

    def resolve(self, node: ast.expr) -> str:
        """The dotted path a chain reaches through an import ('' where it starts at something not imported)."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            base = self.resolve(node.args[0])
            return f"{base}.{node.args[1].value}" if base else ""
        dotted = _dotted(node)
        head, _, rest = dotted.partition(".")
        if head not in self.aliases:
            return ""
        return self.aliases[head] + ("." + rest if rest else "")

    def check_symbol(self, node: ast.AST, symbol: str) -> None:
        parts = symbol.split(".")
        if any(_matches(symbol, rule) for rule in self.own_job):
            self.flag(node, f"用了 / uses {symbol}", "own")
        elif parts[0] not in ANSWER_MODULES:
            self.flag(node, f"导入 / imports {symbol}", "module")
        elif any(p in HIDDEN_MODULES for p in parts[1:]):
            self.flag(node, f"经由 / reaches {symbol}", "interpreter")
        elif parts[0] == "exercises" and len(parts) > 1 and not parts[1].startswith("ex"):
            self.flag(node, f"导入 / imports {symbol}", "api")
        elif parts[0] == "kata" and len(parts) > 1 and parts[1] not in LEARNER_API:
            self.flag(node, f"导入 / imports {symbol}", "api")
        elif parts[0] == "kata" and len(parts) > 2 and parts[2] not in api_names(parts[1]):
            self.flag(node, f"用了 / uses {symbol} (kata.{parts[1]} 没有定义它 / does not define it)", "api")
        elif any(_matches(symbol, rule) for rule in BACKDOORS):
            self.flag(node, f"用了 / uses {symbol}", "backdoor")

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.check_symbol(node, a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.flag(node, "相对导入 / a relative import", "api")
            return
        for a in node.names:
            if a.name == "*":
                self.flag(node, f"from {node.module} import *", "star")
                self.check_symbol(node, node.module or "")
            else:
                self.check_symbol(node, f"{node.module}.{a.name}")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in DYNAMIC:
            self.flag(node, f"用了 / uses {node.id}()", "dynamic")
        elif node.id == "getattr" and not self._plain_getattr(node):
            self.flag(node, "getattr 传来传去或在模块上算名字 / getattr passed around or on a module with a computed "
                      "name", "dynamic")
        elif node.id.startswith("__") and node.id.endswith("__") and node.id not in SAFE_DUNDERS:
            self.flag(node, f"用了 / uses {node.id}", "interpreter")

    def _plain_getattr(self, node: ast.Name) -> bool:
        """getattr(x, name[, default]) called directly, its name a constant or its x not a module."""
        call = self.parents.get(node)
        if not (isinstance(call, ast.Call) and call.func is node and len(call.args) >= 2):
            return False
        return isinstance(call.args[1], ast.Constant) or not self.resolve(call.args[0])

    def _check_reach(self, node: ast.AST, symbol: str) -> None:
        """A chain used in the code (not an import line): what it reaches must be allowed too."""
        if symbol.split(".")[0] in ANSWER_MODULES:
            self.check_symbol(node, symbol)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("__") and node.attr.endswith("__") and node.attr not in SAFE_DUNDERS:
            self.flag(node, f"访问 / touches {_dotted(node) or node.attr}", "interpreter")
        elif node.attr in INTERPRETER_ATTRIBUTES:
            self.flag(node, f"访问 / touches {_dotted(node) or node.attr}", "interpreter")
        elif not isinstance(self.parents.get(node), ast.Attribute):  # the whole chain, once
            symbol = self.resolve(node)
            if symbol:
                self._check_reach(node, symbol)
        if isinstance(node.ctx, (ast.Store, ast.Del)) and self.resolve(node.value):
            self.flag(node, f"改写 / patches {_dotted(node)}", "patch")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
            symbol = self.resolve(node)
            if symbol:
                self._check_reach(node, symbol)
        if isinstance(func, ast.Name) and func.id in {"setattr", "delattr"} and node.args and \
                self.resolve(node.args[0]):
            self.flag(node, f"改写 / patches {_dotted(node.args[0])} with {func.id}()", "patch")
        elif isinstance(func, ast.Name) and func.id == "open" and _writes(node):
            self.flag(node, "以写模式打开文件 / opens a file for writing", "files")
        elif isinstance(func, ast.Attribute) and (func.attr in PATH_WRITES or (
                func.attr in OS_CALLS and self.resolve(func.value) in {"os", "os.path"})):
            self.flag(node, f"调用 / calls {_dotted(func) or func.attr}()", "files")
        self.generic_visit(node)


def scan_answer(source: str, ex: Exercise | None = None) -> list[str]:
    """The findings in an answer module's source, one line each: "line 3: 用了 / uses kata.oracles.rtn — …"; empty
    when it keeps every rule. `ex` adds the exercise's own job to the rules."""
    try:
        tree = syntax.parse(source)
    except SyntaxError:
        return []  # it cannot import: the test run reports the syntax error itself
    scan = _Scan(tree, ex.own_job if ex is not None else ())
    scan.visit(tree)
    return [f"line {line}: {what}" for line, what in sorted(scan.found)]


def scan_answer_file(path: Path, ex: Exercise | None = None) -> list[str]:
    """scan_answer on the text Python will run: a coding cookie other than UTF-8 would make Python read the file
    differently from the scan, so it is a finding of its own."""
    return scan_answer_bytes(path.read_bytes(), ex)


def scan_answer_bytes(data: bytes, ex: Exercise | None = None) -> list[str]:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return []  # an unknown encoding cannot be imported: the test run reports it
    if encoding not in ("utf-8", "utf-8-sig"):
        return [f"line 1: 编码声明 / coding cookie {encoding!r} — 只接受 UTF-8 / only UTF-8 is read the way Python "
                "reads it"]
    return scan_answer(data.decode("utf-8-sig", errors="replace"), ex)
