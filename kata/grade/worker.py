"""The answer's side of a grade's process boundary: `serve` imports the answer module and answers the judge.

答案一侧：worker 进程导入答案模块，执行评判进程的请求，结果按协议（kata/grade/protocol.py）传回；导入答案之前先
在本练习“自己的工作”（登记表的 own_job）上布好绊线，每次调用都在服务端代码里检查“怎么做的”。
Objects the answer builds stay here behind handles (numbers into OBJECTS); models the judge sends come back with
the answer's changes; the judge's callables are called back; a call whose tensors require grad keeps its graph for
the judge's backward. Tripwires on the exercise's own job (kata/grade/tripwire.py) are laid before the answer is
imported, and its checks of how (kata/harness/watch.py) watch each call the judge makes: server code, not anything
the answer imports. The judge's side is kata/grade/boundary.py.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import itertools
import os
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO

import torch

from kata.grade.protocol import (
    DATA_TYPES,
    REBUILT,
    Backward,
    BoundaryError,
    Call,
    Callback,
    Copy,
    Get,
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
    SpyCall,
    SpyCount,
    SpyStart,
    SpyStop,
    builtin_name,
    describe,
    detached,
    map_nested,
    receive,
    remote_exception,
    send,
)
from kata.grade.tripwire import Tripwires
from kata.harness import watch
from kata.harness.curriculum import BY_MODULE
from kata.harness.dot_rule import nvidia_dot_rule
from kata.harness.spy import OpSpy, Spy, spy

OBJECTS: list[Any] = []  # the worker's objects behind handles, by number


def worker_object(number: int) -> Any:
    """The worker's object behind handle `number`: how a proxy inside a model the judge sends is unpickled."""
    return OBJECTS[number]


class JudgeCallable:
    """A judge's callable, as the worker sees it: calling it asks the judge to run it."""

    def __init__(self, number: int, server: Server) -> None:
        self.number, self.server = number, server

    def __call__(self, *args, **kwargs):
        server = self.server
        args, kwargs = server.for_judge(args, []), server.for_judge(kwargs, [])
        with server.tripwires.disarmed():  # the judge's own code runs now, not the answer's
            send(server.writer, Callback(self.number, args, kwargs, server.take_reports()))
            reply = receive(server.reader, trusted=True)
        for sync in reply.syncs:  # what the test's callback did to the linked models it was given
            vars(server.linked_models[sync.number]).update(vars(sync.model))
            server.mark_synced(sync.number)
        if reply.error is not None:
            raise remote_exception(*reply.error)
        return server.unwrap(reply.value, [], [])


class Server:
    """The worker's end: the answer module, the objects handed out, the pipes."""

    def __init__(self, module: types.ModuleType, reader: BinaryIO, writer: BinaryIO, tripwires: Tripwires,
                 how: tuple[str, ...] = ()) -> None:
        self.module, self.reader, self.writer, self.tripwires = module, reader, writer, tripwires
        self.watched = watch.Watched(module, how) if how else None  # the checks of how, around each call
        self.numbers: dict[int, int] = {}  # id(object) → handle number (objects are kept: ids stay unique)
        self.spies: list[Spy | OpSpy] = []
        self.graphs: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}  # kept for the judge's backward
        self.graph_numbers = itertools.count()
        self.linked: dict[int, int] = {}  # id(model) → its link number, for models the test's callbacks returned
        self.linked_models: dict[int, torch.nn.Module] = {}
        self.synced: dict[int, set[int]] = {}  # link number → ids of the modules the judge's copy has
        self.reports: dict[int, dict] = {}  # link number → its changes, sent with the next message

    def handle(self, value: Any) -> Handle:
        number = self.numbers.get(id(value))
        if number is None:
            number = self.numbers[id(value)] = len(OBJECTS)
            OBJECTS.append(value)
        if isinstance(value, type):
            kind, cls = "module class" if issubclass(value, torch.nn.Module) else "class", value
        else:
            cls = type(value)
            kind = "module" if isinstance(value, torch.nn.Module) else "callable" if callable(value) else "object"
        return Handle(number, kind, cls.__name__, f"{cls.__module__}.{cls.__qualname__}")

    def for_judge(self, value: Any, given: list[torch.nn.Module]) -> Any:
        """A value as it crosses: tensors plain and detached, the judge's own models as Given, named tuples as
        tuples, data as itself, another subclass of a data type as itself (the judge refuses it), everything else
        behind a handle."""
        def leaf(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return detached(v)
            index = next((i for i, model in enumerate(given) if v is model), None)
            if index is not None:
                return Given(index)
            number = self.linked.get(id(v))
            if number is not None and self.linked_models[number] is v:
                self.report_linked(number)
                return Linked(number)
            if isinstance(v, tuple) and hasattr(v, "_fields"):  # a named tuple (load_state_dict's): a plain one
                return self.for_judge(tuple(v), given)
            if isinstance(v, types.GeneratorType):  # named_parameters() and the like: their items
                return self.for_judge(list(v), given)
            if isinstance(v, (*DATA_TYPES, bytes, tuple, list, dict)):
                return v
            return self.handle(v)
        return map_nested(value, leaf)

    def unwrap(self, value: Any, given: list[torch.nn.Module], needs_grad: list[torch.Tensor]) -> Any:
        """Arguments from the judge: handles become the worker's objects, callbacks callables, models themselves,
        tensors autograd must reach leaves that require grad."""
        def leaf(v: Any) -> Any:
            if isinstance(v, Ref):
                return OBJECTS[v.key] if v.kind == "handle" else JudgeCallable(v.key, self)
            if isinstance(v, Sent):
                for module in v.model.modules():  # the test's hooks on it: called back in the judge
                    for hooks in (module._forward_pre_hooks, module._forward_hooks):
                        hooks.update({k: JudgeCallable(h.key, self) for k, h in hooks.items() if isinstance(h, Ref)})
                given.append(v.model)
                return v.model
            if isinstance(v, NeedsGrad):
                needs_grad.append(v.tensor.requires_grad_(True))
                return v.tensor
            if isinstance(v, Link):
                self.linked[id(v.model)], self.linked_models[v.number] = v.number, v.model
                self.mark_synced(v.number)
                return v.model
            return v
        return map_nested(value, leaf)

    def mark_synced(self, number: int) -> None:
        """The judge's copy of linked model `number` is now what the worker's is."""
        self.synced[number] = {id(m) for m in self.linked_models[number].modules()}

    def report_linked(self, number: int) -> None:
        """Queue for the judge what the answer changed in linked model `number` since the last sync."""
        self.reports[number] = self.report(self.linked_models[number], self.synced[number])
        self.mark_synced(number)

    def take_reports(self) -> dict[int, dict]:
        reports, self.reports = self.reports, {}
        return reports

    def report(self, model: torch.nn.Module, originals: set[int]) -> dict:
        """What the judge needs to make its copy of `model` what the answer left: each kept module's own parameters,
        buffers and forward-hook counts; submodules that are new, or the answer's, as handles."""
        kept, replaced, stack = {}, {}, [("", model)]
        while stack:
            name, module = stack.pop()
            kept[name] = {"parameters": {k: detached(v) for k, v in module._parameters.items()},
                          "buffers": {k: detached(v) for k, v in module._buffers.items()},
                          "hooks": [len(module._forward_pre_hooks), len(module._forward_hooks)]}
            for child_name, child in module._modules.items():
                full = f"{name}.{child_name}" if name else child_name
                ours = id(child) in originals and id(child) not in self.numbers
                if child is not None and ours and type(child).__module__ != self.module.__name__:
                    stack.append((full, child))
                elif type(child).__name__ in REBUILT and type(child) is getattr(torch.nn, type(child).__name__) \
                        and not child._modules and not child._forward_hooks and not child._forward_pre_hooks:
                    replaced[full] = describe(child)  # a new plain torch layer: the judge builds its own
                elif child is not None:
                    replaced[full] = self.handle(child)
        return {"kept": kept, "replaced": replaced}

    def respond(self, request: Request) -> Return | Raise:
        """Answer one of the judge's requests: a handler per message type."""
        for key, value in request.environment.items():  # the judge's values of SHARED_VARIABLES, as the test set them
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        message = request.message
        handler = {Backward: self.on_backward, SpyStart: self.on_spy_start, SpyCount: self.on_spy_count,
                   SpyCall: self.on_spy_call, SpyStop: self.on_spy_stop}.get(type(message))
        if handler is not None:
            return Return(handler(message), [], [], None, {})
        return self.on_answer(message)

    def on_backward(self, message: Backward) -> list:
        inputs, outputs = self.graphs.pop(message.graph)
        pairs = [(o, g) for o, g in zip(outputs, message.grads, strict=True) if g is not None and o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return [None if t.grad is None else detached(t.grad) for t in inputs]

    def on_spy_start(self, message: SpyStart) -> int:
        self.spies.append(spy(message.dotted))
        return len(self.spies) - 1

    def on_spy_count(self, message: SpyCount) -> int:
        return len(self.spies[message.number])

    def on_spy_call(self, message: SpyCall) -> tuple | None:
        call = self.spies[message.number][message.index]
        return None if call is None else (call.args, call.result)

    def on_spy_stop(self, message: SpyStop) -> int:
        spy = self.spies[message.number]
        if isinstance(spy, Spy):
            spy.undo()
        else:
            self.spies[message.number] = OpSpy("aten.")  # recorded calls stay readable; nothing more counts
            self.spies[message.number].calls = spy.calls
        return len(spy)

    def target(self, path: tuple) -> Any:
        target = self.module if path[0] is None else OBJECTS[path[0]]
        for name in path[1:]:
            target = getattr(target, name)
        return target

    def run(self, message: Call | Get | Set | Copy, given: list, needs_grad: list) -> Callable[[], Any]:
        """What the message asks the answer to do, as a function of nothing."""
        if isinstance(message, Set):
            value = self.unwrap(message.value, given, needs_grad)
            return lambda: setattr(self.target(message.path[:-1]), message.path[-1], value)
        if isinstance(message, Copy):
            return lambda: copy.deepcopy(self.target(message.path))
        if isinstance(message, Get):
            return lambda: self.target(message.path)
        args, kwargs = self.unwrap(message.args, given, needs_grad), self.unwrap(message.kwargs, given, needs_grad)

        def call():
            target = self.target(message.path)
            if self.watched is None:
                return target(*args, **kwargs)
            return self.watched.call(target, lambda: target(*args, **kwargs), args)
        return call

    def on_answer(self, message: Call | Get | Set | Copy) -> Return | Raise:
        """Run the answer's code (a call, an attribute read or write, a copy) with the tripwires armed and the
        spies recording; the reply carries the value and what the answer changed."""
        given: list[torch.nn.Module] = []
        needs_grad: list[torch.Tensor] = []
        run = self.run(message, given, needs_grad)
        originals = {id(m) for model in given for m in model.modules()}
        graph, failure, reply = None, None, None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = self.armed(run)
                graph = self.keep_graph(result, needs_grad)
                reply = self.for_judge(result, given)
            except BaseException as error:  # SystemExit and KeyboardInterrupt too: they end up as RuntimeError
                failure = (builtin_name(type(error)), str(error))
        said = [(builtin_name(w.category), str(w.message)) for w in caught]
        for number in self.linked_models:  # the judge's copies may be held by the test: keep them true
            self.report_linked(number)
        reports = [self.report(model, originals) for model in given]
        if failure is not None:
            return Raise(*failure, reports, said, self.take_reports())
        return Return(reply, reports, said, graph, self.take_reports())

    def armed(self, run: Callable[[], Any]) -> Any:
        """run() with the tripwires armed and the aten spies recording; a tripwire crossed fails it."""
        with self.tripwires.armed(), contextlib.ExitStack() as stack:
            for spy in self.spies:
                if isinstance(spy, OpSpy) and spy.op:
                    stack.enter_context(spy)
            result = run()
        self.tripwires.check()
        return result

    def keep_graph(self, result: Any, needs_grad: list[torch.Tensor]) -> int | None:
        """Keep the graph of a result autograd must reach back through; its number for the judge, else None."""
        outputs = [result] if isinstance(result, torch.Tensor) else list(result) if isinstance(result, tuple) else []
        if not needs_grad or not any(isinstance(o, torch.Tensor) and o.requires_grad for o in outputs):
            return None
        graph = next(self.graph_numbers)
        self.graphs[graph] = (needs_grad, outputs)
        return graph


def public_names(server: Server) -> dict[str, Any]:
    """What the judge's proxy module holds: the module's own functions and classes (as handles), its constants."""
    module, names = server.module, {}
    for key, value in vars(module).items():
        if key.startswith("_"):
            continue
        if callable(value) and getattr(value, "__module__", None) == module.__name__:
            names[key] = server.handle(value)
        elif type(value) in (*DATA_TYPES, tuple, list, dict):
            names[key] = server.for_judge(value, [])
    return names


def serve(tree: str, name: str) -> None:
    """Import exercises.<name> from the grading tree and answer the judge's requests until it closes the pipe. The
    protocol keeps the process's original stdin / stdout; the answer's prints go to stderr. The tripwires are laid
    before the answer is imported, and armed while it imports."""
    reader, writer = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, tree)
    ex = BY_MODULE.get(name)
    if os.environ.get("TRITON_INTERPRET") == "1":
        nvidia_dot_rule()  # a tl.dot a GPU refuses fails in the interpreter too
    tripwires = Tripwires(ex.own_job if ex is not None else ())
    try:
        with tripwires.armed():
            module = importlib.import_module(f"exercises.{name}")
        tripwires.check()
        server = Server(module, reader, writer, tripwires, ex.how if ex is not None else ())
        send(writer, Names(public_names(server)))
    except BaseException as error:  # the judge raises it on import, as an import error would be
        send(writer, Names({}, (builtin_name(type(error)), f"{type(error).__name__}: {error}")))
        return
    while True:
        try:
            request = receive(reader, trusted=True)
        except BoundaryError:
            return
        send(writer, server.respond(request))
