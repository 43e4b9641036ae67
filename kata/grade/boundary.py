"""The process boundary of a grade: the answer module runs in a worker process; the tests see proxies of it
(kata/grade/proxies.py). This module is the judge's end: the worker process, its messages, the import hook.

评分的进程边界：答案模块只在 worker 进程里导入和运行；评判测试的 pytest 进程只拿到它的代理——调用的参数发过去，
结果以数据传回（torch.load(weights_only=True)，并逐个检查确切类型），所以答案碰不到评判进程里的任何对象。
The judging process (pytest, the kata's plugin with --answers-in-worker) never imports the answer: importing
`exercises.exN_*` gives a module of proxies. Calling one sends the arguments to the worker, which runs the answer
and sends back plain data — tensors (exactly torch.Tensor), numbers, strings, None, dtypes and tuples / lists /
dicts of them — read with torch.load(weights_only=True), so nothing the answer builds can run in the judge.
- Objects the answer builds (its classes, their instances, its nn.Modules, bound methods) stay in the worker:
  the judge holds a handle (a number) behind a proxy. Each class of the answer has one proxy class of the same
  name (isinstance and type(m).__name__ work); a proxy of an nn.Module is an nn.Module the judge can put in a
  model. Attribute reads, calls and attribute writes cross as data.
- Callables the test passes in (a quantizer, a progress callback) stay in the judge: the worker calls them back.
- A model the test passes in is copied to the worker; after the call the judge's own model takes the answer's
  changes: parameters and buffers (values, dtypes, shapes), submodules it swapped or added (as proxies of the
  worker's), and the count of forward hooks left on each module. A model that holds proxies goes back as itself.
- Warnings the answer raises are raised again in the judge; an exception crosses as its nearest built-in type (a
  class deriving from TypeError and ValueError arrives as TypeError, the first in its order) with its message.
- The test's forward hooks on a model it passes run in the judge; a name the test patches on the answer module
  (monkeypatch.setattr) is patched in the worker; `calls_to` (the kata's fixture) counts calls in the worker.
- A model a test's callable returns (compare_formats' load_model) stays linked: when the answer hands it to
  another of the test's callables, or after each call, the judge's copy takes the worker's changes, and what a
  callable does to it goes back.
- Autograd crosses: a call whose tensors require grad keeps its graph in the worker, and the judge's backward
  asks the worker for their gradients (5.9's straight-through estimators).
Every exercise crosses it when graded (kata/grade/run.py), each worker in a sandbox of its own
(kata/grade/sandbox.py); learners' own runs stay in one process.

The worker is kata.grade.finder.worker_command(tree, name): python -I, the grading tree's kata first on the path,
stdin / stdout kept for the protocol (the answer's prints go to stderr).
"""
from __future__ import annotations

import builtins
import contextlib
import os
import subprocess
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch

from kata.grade.protocol import (
    REBUILT,
    SHARED_VARIABLES,
    BoundaryError,
    Call,
    Callback,
    CallbackReply,
    Given,
    Handle,
    Link,
    Linked,
    Names,
    NeedsGrad,
    Raise,
    Ref,
    Request,
    Return,
    Sent,
    Set,
    Sync,
    builtin_name,
    map_nested,
    receive,
    remote_exception,
    send,
)
from kata.grade.proxies import (
    AnswerModule,
    RemoteCallable,
    RemoteClass,
    RemoteGrad,
    RemoteModule,
    RemoteObject,
    number_of,
)


def _rebuilt(description: dict) -> torch.nn.Module:
    """The judge's own torch layer from description (the class is one of REBUILT, nothing else)."""
    if description["rebuild"] not in REBUILT:
        raise BoundaryError(f"不能重建 / cannot rebuild {description['rebuild']!r}")
    cls = getattr(torch.nn, description["rebuild"])
    module = cls.__new__(cls)
    torch.nn.Module.__init__(module)
    vars(module).update(description["attributes"])
    for key, value in description["parameters"].items():
        module._parameters[key] = None if value is None else torch.nn.Parameter(
            value, requires_grad=key not in description["frozen"])
    module._buffers.update(description["buffers"])
    return module


def _left_by_the_answer(*args) -> None:
    """Stands in, on the judge's model, for a forward hook the answer left on the worker's copy."""


class Worker:
    """One worker process serving one exercise module; the judge's end of the pipes, and its proxies."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.callbacks: list[Callable] = []
        self.proxies: dict[int, Any] = {}  # handle number → its proxy (one each: identity holds)
        self.classes: dict[str, type] = {}  # class key → its proxy class
        self.linked: list[torch.nn.Module] = []  # models the test's callbacks returned, linked to the worker's copies

    def first(self) -> Any:
        return self._next()

    def _next(self) -> Any:
        """The worker's next message; if it died instead, a BoundaryError with how it ended."""
        try:
            return receive(self.process.stdout, trusted=False)
        except BoundaryError as error:
            if self.process.poll() is None and "exited" in str(error):
                self.process.wait(timeout=10)
            code = self.process.poll()
            how = "" if code is None else f" (signal {-code})" if code < 0 else f" (exit {code})"
            raise BoundaryError(f"{error}{how}") from None

    def request(self, message: Any, graph: bool = False) -> Any:
        """Send one request (a message of kata/grade/protocol.py) and serve the callbacks until the answer: its
        value (handles as proxies), its warnings raised here, the models sent changed as the answer changed them.
        graph=True: tensors that require grad cross as ones autograd must reach, and the answer is (value, the
        number of the graph the worker kept, or None)."""
        sent: list[torch.nn.Module] = []
        if isinstance(message, Call):
            message = Call(message.path, *self.wrap((message.args, message.kwargs), sent, graph))
        elif isinstance(message, Set):
            message = Set(message.path, self.wrap(message.value, sent))
        request = Request(message, {key: os.environ.get(key) for key in SHARED_VARIABLES})
        with self._hooks_as_callbacks(sent):
            try:
                send(self.process.stdin, request)
            except BrokenPipeError:
                pass  # it died: _next says how
        while True:
            reply = self._next()
            if isinstance(reply, Callback):  # the answer calls something the test passed in: run it here
                self._serve_callback(reply)
                continue
            if not isinstance(reply, (Return, Raise)):
                raise BoundaryError(f"答案进程回了未知消息 / unknown message from the worker: {type(reply).__name__}")
            self._update_linked(reply.linked)
            for model, report in zip(sent, reply.reports, strict=True):
                self.apply(model, report)
            for category, text in reply.said:
                category = getattr(builtins, category, UserWarning)
                warnings.warn(text, category if issubclass(category, Warning) else UserWarning, stacklevel=3)
            if isinstance(reply, Raise):
                raise remote_exception(reply.kind, reply.text)
            value = self.from_worker(reply.value, sent)
            return (value, reply.graph) if graph else value

    def _update_linked(self, reports: dict[int, dict]) -> None:
        for number, report in reports.items():
            self.apply(self.linked[number], report)

    def _serve_callback(self, callback: Callback) -> None:
        """Run the test's callable `callback.number`. A model one of its callables returned earlier arrives as the
        judge's own model with the worker's changes, and goes back with the callable's; a model it returns is
        linked."""
        self._update_linked(callback.linked)
        given: list[int] = []
        args, kwargs = self.from_worker(callback.args, [], given), self.from_worker(callback.kwargs, [], given)
        value, error = None, None
        try:
            value = self.wrap(self.callbacks[callback.number](*args, **kwargs), [], link=True)
        except Exception as failure:
            error = (builtin_name(type(failure)), str(failure))
        syncs = [Sync(n, self.linked[n]) for n in dict.fromkeys(given)]
        with self._hooks_as_callbacks([s.model for s in syncs]):
            send(self.process.stdin, CallbackReply(value, error, syncs))

    @contextlib.contextmanager
    def _hooks_as_callbacks(self, models: list[torch.nn.Module]):
        """While the models are sent: the test's forward hooks on them as callbacks (they run here, in the judge)."""
        saved = []
        for module in (m for model in models for m in model.modules()):
            for hooks in (module._forward_pre_hooks, module._forward_hooks):
                if hooks:
                    saved.append((hooks, dict(hooks)))
                    for key, hook in hooks.items():
                        self.callbacks.append(hook)
                        hooks[key] = Ref("callback", len(self.callbacks) - 1)
        try:
            yield
        finally:
            for hooks, original in saved:
                hooks.update(original)

    def call(self, path: tuple, args: tuple, kwargs: dict) -> Any:
        """Call the worker's object at `path`; through RemoteGrad when autograd must reach tensors of the judge."""
        if torch.is_grad_enabled():
            tensors = []
            map_nested((args, kwargs), lambda v: tensors.append(v) if isinstance(v, torch.Tensor) and v.requires_grad
                 else None)
            if tensors:
                return RemoteGrad.apply(self, path, args, kwargs, *tensors)
        return self.request(Call(path, args, kwargs))

    def wrap(self, value: Any, sent: list[torch.nn.Module], graph: bool = False, link: bool = False) -> Any:
        """Values as they cross to the worker: proxies as their handles, the judge's models copied (their changes
        come back), other callables as callbacks, tensors detached (with graph: marked where they require grad)."""
        def leaf(v: Any) -> Any:
            number = number_of(v)
            if number is not None:
                return Ref("handle", number)
            if isinstance(v, torch.Tensor):
                return NeedsGrad(v.detach()) if graph and v.requires_grad else v.detach() if v.requires_grad else v
            if isinstance(v, torch.nn.Module) and link:  # returned by a callback (load_model): kept linked
                number = next((n for n, m in enumerate(self.linked) if m is v), None)
                if number is None:
                    self.linked.append(v)
                    number = len(self.linked) - 1
                return Link(number, v)
            if isinstance(v, torch.nn.Module):
                sent.append(v)
                return Sent(len(sent) - 1, v)
            if callable(v):
                self.callbacks.append(v)
                return Ref("callback", len(self.callbacks) - 1)
            return v
        return map_nested(value, leaf)

    def from_worker(self, value: Any, sent: list[torch.nn.Module], linked: list[int] | None = None) -> Any:
        """A value from the worker: proxies for handles, the judge's own models for Given and Linked (numbers of the
        linked ones seen go to `linked`)."""
        def leaf(v: Any) -> Any:
            if isinstance(v, Handle):
                return self.proxy(v)
            if isinstance(v, Linked):
                if linked is not None:
                    linked.append(v.number)
                return self.linked[v.number]
            return sent[v.index] if isinstance(v, Given) else v
        return map_nested(value, leaf)

    def proxy(self, handle: Handle) -> Any:
        """The one proxy of the worker's object `handle`."""
        if handle.number not in self.proxies:
            if handle.kind in ("class", "module class"):
                made = self.proxy_class(handle.key, handle.name, handle.kind == "module class")
                type.__setattr__(made, "_number", handle.number)
            elif handle.kind == "callable":
                made = RemoteCallable(self, handle.number, handle.name)
            else:
                made = self.proxy_class(handle.key, handle.name, handle.kind == "module")._made(self, handle.number)
            self.proxies[handle.number] = made
        return self.proxies[handle.number]

    def proxy_class(self, key: str, name: str, module_like: bool) -> type:
        """The judge's class standing for the worker's class `key`: the same name; an nn.Module if it is one."""
        if key not in self.classes:
            base = RemoteModule if module_like else RemoteObject
            self.classes[key] = RemoteClass(name, (base,), {"__module__": "answer (in the worker)",
                                                            "__qualname__": name, "_worker": self, "_number": None})
        return self.classes[key]

    def apply(self, model: torch.nn.Module, report: dict) -> None:
        """Make the judge's `model` what the answer left in the worker (report: Server.report)."""
        for name, replaced in report["replaced"].items():
            parent, _, child = name.rpartition(".")
            made = self.proxy(replaced) if isinstance(replaced, Handle) else _rebuilt(replaced)
            setattr(model.get_submodule(parent), child, made)
        for name, kept in report["kept"].items():
            module = model.get_submodule(name)
            for slot, values in ((module._parameters, kept["parameters"]), (module._buffers, kept["buffers"])):
                if set(slot) != set(values):
                    raise BoundaryError(f"答案改了 {name or '模型'} 有哪些参数或缓冲区 / the answer changed which "
                                        f"parameters or buffers {name or 'the model'} has: {sorted(slot)} → "
                                        f"{sorted(values)}")
                for key, value in values.items():
                    if isinstance(slot[key], torch.nn.Parameter) and value is not None:
                        slot[key].data = value
                    else:
                        slot[key] = value
            for hooks, count in zip((module._forward_pre_hooks, module._forward_hooks), kept["hooks"], strict=True):
                register = module.register_forward_pre_hook if hooks is module._forward_pre_hooks else \
                    module.register_forward_hook
                for _ in range(count - len(hooks)):
                    register(_left_by_the_answer)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def remote_module(fullname: str, worker: Worker) -> types.ModuleType:
    """The module `fullname` as the judge sees it: the answer's public functions and classes as proxies, its data as
    data. An answer that fails to import raises its error (as the nearest built-in type) on first import."""
    names = worker.first()
    if not isinstance(names, Names):
        raise BoundaryError(f"答案进程回了未知消息 / unknown message from the worker: {type(names).__name__}")
    if names.error is not None:
        raise remote_exception(*names.error)
    module = AnswerModule(fullname, "答案的代理，运行在 worker 进程 / proxies of the answer, run in a worker")
    module.__dict__["_worker"] = worker
    for name, value in names.names.items():
        module.__dict__[name] = worker.proxy(value) if isinstance(value, Handle) else value
    return module
