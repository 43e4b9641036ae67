"""The process boundary of a grade: the answer module runs in a worker process; the tests see proxies of it.

评分的进程边界：答案模块只在 worker 进程里导入和运行；评判测试的 pytest 进程只拿到它的代理——调用的参数发过去，
结果以数据传回（torch.load(weights_only=True)，并逐个检查确切类型），所以答案碰不到评判进程里的任何对象。
The judging process (pytest, the kata's plugin with --answers-in-worker) never imports the answer: importing
`exercises.exN_*` gives a module of proxies. Calling one sends the arguments to the worker, which runs the answer
and sends back plain data — tensors (exactly torch.Tensor), numbers, strings, None, dtypes and tuples / lists /
dicts of them — read with torch.load(weights_only=True), so nothing the answer builds can run in the judge.
Callables the test passes in (a quantizer, a progress callback) stay in the judge: the worker calls them back. A
model the test passes in is copied to the worker, and after the call its parameters and buffers come back into the
judge's own model (the answer may change weights in place, as AWQ, GPTQ and 5.11 do, not the model's structure).
An exception crosses as its nearest built-in type (a class deriving from TypeError and ValueError arrives as
TypeError, the first in its order) with its message.

BOUNDARY_EXERCISES cross it. The others build modules of their own that the tests then inspect and run (5.3's
QuantLinear, 5.4's HessianAccumulator, 5.7's W8A8Linear, 5.8's formats, 5.9's autograd, 5.10's kernel layers):
they still run in the judging process until objects can stay in the worker behind handles.

The worker is `worker_command(tree, name)`: python -I, the grading tree's kata first on the path, stdin / stdout
kept for the protocol (the answer's prints go to stderr).
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.util
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

BOUNDARY_EXERCISES = frozenset({"ex1_1", "ex1_2", "ex2_1", "ex2_2", "ex3_1", "ex3_2", "ex4_1", "ex5_1", "ex5_2",
                                "ex5_5", "ex5_6", "ex5_11", "ex5_12"})
DATA_TYPES = (int, float, bool, str, complex, type(None), torch.dtype, torch.device, torch.Size)


class BoundaryError(RuntimeError):
    """The worker broke the protocol (died, or sent something that is not plain data)."""


def _send(stream: BinaryIO, message: object) -> None:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO, trusted: bool) -> Any:
    """The next message; from the worker (trusted=False) only plain data, checked for exact types."""
    head = stream.read(8)
    if len(head) < 8:
        raise BoundaryError("答案进程退出了 / the answer's worker process exited")
    data = stream.read(struct.unpack("<Q", head)[0])
    if trusted:
        return torch.load(io.BytesIO(data), weights_only=False)
    try:
        return _plain(torch.load(io.BytesIO(data), weights_only=True))
    except Exception as error:
        raise BoundaryError(f"答案送回的不是普通数据 / the answer sent back something that is not plain data: "
                            f"{type(error).__name__}: {error}") from None


def _plain(value: Any) -> Any:
    """value itself, if it is plain data of exact types all the way down; else a TypeError."""
    kind = type(value)
    if kind is torch.Tensor or kind in DATA_TYPES:
        return value
    if kind in (tuple, list):
        return kind(_plain(v) for v in value)
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"{kind.__module__}.{kind.__qualname__} 不是普通数据 / is not plain data")


def _exception(name: str, message: str) -> Exception:
    """The built-in exception class `name` (RuntimeError for anything that is not an Exception class: an answer's
    SystemExit must not stop the judge) with the message."""
    cls = getattr(builtins, name, None)
    return (cls if isinstance(cls, type) and issubclass(cls, Exception) else RuntimeError)(message)


def _builtin_exception(error: BaseException) -> str:
    """The name of the first built-in exception class in type(error)'s method resolution order."""
    for cls in type(error).__mro__:
        if getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return "Exception"


# --- the worker: imports the answer, answers calls -------------------------------------------------------------

class _Callback:
    """A judge's callable, as the worker sees it: calling it asks the judge to run it."""

    def __init__(self, number: int, conn: tuple[BinaryIO, BinaryIO]) -> None:
        self.number, self.conn = number, conn

    def __call__(self, *args, **kwargs):
        reader, writer = self.conn
        _send(writer, ("callback", self.number, _for_judge(args), _for_judge(kwargs)))
        kind, *rest = _receive(reader, trusted=True)
        if kind == "raise":
            raise _exception(rest[0], rest[1])
        return rest[0]


@dataclass(frozen=True)
class _Ref:
    """In the judge's arguments, where a callable was: the answer's own function `key` ("own"), or the judge's
    callable number `key`, to be called back ("callback")."""

    kind: str
    key: str | int


def _map(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """leaf applied to everything inside nested tuples, lists and dicts (their values), the containers rebuilt."""
    if type(value) in (tuple, list):
        return type(value)(_map(v, leaf) for v in value)
    if isinstance(value, dict):  # a state_dict is an OrderedDict: it comes back a plain dict
        return {k: _map(v, leaf) for k, v in value.items()}
    return leaf(value)


def _modules(value: Any) -> list[torch.nn.Module]:
    """The nn.Modules among the arguments, in order (the judge and the worker walk theirs the same way)."""
    found: list[torch.nn.Module] = []
    _map(value, lambda v: found.append(v) if isinstance(v, torch.nn.Module) else None)
    return found


def _for_judge(value: Any) -> Any:
    """The answer's result as the judge may take it: Parameters and other tensors as plain detached tensors."""
    return _map(value, lambda v: v.detach().as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v)


def _unwrap(value: Any, module: types.ModuleType, conn) -> Any:
    """Arguments from the judge: each _Ref becomes the answer's own function or a callback."""
    def resolve(v: Any) -> Any:
        if not isinstance(v, _Ref):
            return v
        return getattr(module, v.key) if v.kind == "own" else _Callback(v.key, conn)
    return _map(value, resolve)


def _public(module: types.ModuleType) -> dict[str, tuple[str, Any]]:
    """What the judge's proxy module holds: the module's own functions (as "function") and its constants."""
    names = {}
    for key, value in vars(module).items():
        if key.startswith("_"):
            continue
        if callable(value) and getattr(value, "__module__", None) == module.__name__:
            names[key] = ("function", None)
        elif type(value) in (*DATA_TYPES, tuple, list, dict):
            names[key] = ("data", _for_judge(value))
    return names


def serve(tree: str, name: str) -> None:
    """Import exercises.<name> from the grading tree and answer the judge's calls until it closes the pipe. The
    protocol keeps the process's original stdin / stdout; the answer's prints go to stderr."""
    reader, writer = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, tree)
    try:
        module = importlib.import_module(f"exercises.{name}")
        _send(writer, ("names", _public(module)))
    except BaseException as error:  # the judge raises it on import, as an import error would be
        _send(writer, ("raise", _builtin_exception(error), f"{type(error).__name__}: {error}"))
        return
    conn = (reader, writer)
    while True:
        try:
            _, function, args, kwargs = _receive(reader, trusted=True)
        except BoundaryError:
            return
        args, kwargs = _unwrap(args, module, conn), _unwrap(kwargs, module, conn)
        given = _modules((args, kwargs))
        try:
            result = getattr(module, function)(*args, **kwargs)
            reply = ("return", _for_judge(result))
        except BaseException as error:
            reply = ("raise", _builtin_exception(error), str(error))
        _send(writer, (*reply, [_for_judge(m.state_dict()) for m in given]))


# --- the judge: a module of proxies -------------------------------------------------------------------------------

class Worker:
    """One worker process serving one exercise module; the judge's end of the pipes."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.callbacks: dict[int, Callable] = {}

    def first(self) -> Any:
        return self._next()

    def _next(self) -> Any:
        """The worker's next message; if it died instead, a BoundaryError with how it ended."""
        try:
            return _receive(self.process.stdout, trusted=False)
        except BoundaryError as error:
            if self.process.poll() is None and "exited" in str(error):
                self.process.wait(timeout=10)
            code = self.process.poll()
            how = "" if code is None else f" (signal {-code})" if code < 0 else f" (exit {code})"
            raise BoundaryError(f"{error}{how}") from None

    def call(self, function: str, args: tuple, kwargs: dict) -> Any:
        """Run the answer's `function` in the worker. A model passed in comes back changed as the answer changed
        it: its new parameters and buffers are loaded into the judge's own model (same structure required)."""
        given = _modules((args, kwargs))
        try:
            _send(self.process.stdin, ("call", function, self._wrap(args), self._wrap(kwargs)))
        except BrokenPipeError:
            pass  # it died: _next says how
        while True:
            kind, *rest = self._next()
            if kind in ("return", "raise"):
                states = rest.pop()
                for model, state in zip(given, states, strict=True):
                    model.load_state_dict(state)
                if kind == "raise":
                    raise _exception(*rest)
                return rest[0]
            if kind == "callback":  # the answer calls something the test passed in: run it here
                number, cb_args, cb_kwargs = rest
                try:
                    _send(self.process.stdin, ("return", self.callbacks[number](*cb_args, **cb_kwargs)))
                except Exception as error:
                    _send(self.process.stdin, ("raise", _builtin_exception(error), str(error)))
            else:
                raise BoundaryError(f"答案进程回了未知消息 / unknown message from the worker: {kind!r}")

    def _wrap(self, value: Any) -> Any:
        """The arguments as they cross: callables become _Refs; a model is copied (call() loads its changes back)."""
        def marker(v: Any) -> Any:
            if isinstance(v, RemoteFunction):
                return _Ref("own", v.__name__)
            if callable(v) and not isinstance(v, (torch.nn.Module, torch.Tensor)):
                self.callbacks[len(self.callbacks)] = v
                return _Ref("callback", len(self.callbacks) - 1)
            return v
        return _map(value, marker)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class RemoteFunction:
    """A function of the answer, called in the worker."""

    def __init__(self, worker: Worker, name: str) -> None:
        self.worker, self.__name__ = worker, name

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        return self.worker.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<answer's {self.__name__}, run in the worker>"


def remote_module(fullname: str, worker: Worker) -> types.ModuleType:
    """The module `fullname` as the judge sees it: the answer's public functions as proxies, its data as data. An
    answer that fails to import raises its error (as the nearest built-in type) on first import, as it would."""
    kind, *rest = worker.first()
    if kind == "raise":
        raise _exception(*rest)
    module = types.ModuleType(fullname, "答案的代理，运行在 worker 进程 / proxies of the answer, run in a worker")
    for name, (what, value) in rest[0].items():
        setattr(module, name, RemoteFunction(worker, name) if what == "function" else value)
    return module


WORKER_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); from kata.grade.boundary import serve; "
                    "serve(sys.argv[1], sys.argv[2])")


def worker_command(tree: str, name: str) -> list[str]:
    """The worker for exercises.<name> of the grading tree: isolated mode, the tree's kata, nothing else."""
    return [sys.executable, "-I", "-c", WORKER_BOOTSTRAP, tree, name]


class WorkerFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves every `exercises.exN_*` import as remote_module of a worker started for it; the judging process never
    imports the answer itself. Sandboxed, each worker runs in a sandbox of its own (kata/grade/sandbox.py) that
    sees the grading tree read-only and writes only a temporary folder."""

    def __init__(self, tree: str, sandboxed: bool = False) -> None:
        self.tree, self.sandboxed, self.workers, self.folders = tree, sandboxed, [], []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("exercises.ex"):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        command, env = worker_command(self.tree, spec.name.removeprefix("exercises.")), None
        if self.sandboxed:
            from kata.grade import sandbox

            folder = Path(tempfile.mkdtemp(prefix="kata-worker-"))
            self.folders.append(folder)
            (folder / "root").mkdir()
            (folder / "home").mkdir()
            command = sandbox.wrap(command, folder / "root", [Path(self.tree)], [folder / "home"], folder / "home")
            env = sandbox.environment(dict(os.environ), folder / "home")
        worker = Worker(command, env)
        self.workers.append(worker)
        return remote_module(spec.name, worker)

    def exec_module(self, module):
        pass  # everything is in the proxies already

    def close(self) -> None:
        for worker in self.workers:
            worker.close()  # a sandboxed worker's namespace dies with it, descendants included
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
