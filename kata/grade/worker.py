"""The answer's side of a grade's process boundary: `serve` imports the answer module and answers the judge.

答案一侧：worker 进程导入答案模块，执行评判进程的请求，结果按协议（kata/grade/protocol.py）传回。
Objects the answer builds stay here behind handles (numbers into OBJECTS); models the judge sends are reported back
with the answer's changes; the judge's callables are called back; a call whose tensors require grad keeps its graph
for the judge's backward. The judge's side is kata/grade/boundary.py.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import os
import sys
import types
import warnings
from typing import Any, BinaryIO

import torch

from kata.grade.protocol import (
    DATA_TYPES,
    REBUILT,
    BoundaryError,
    Given,
    Handle,
    Link,
    Linked,
    NeedsGrad,
    Ref,
    Sent,
    builtin_name,
    detached,
    map_nested,
    receive,
    remote_exception,
    send,
)

OBJECTS: list[Any] = []  # the worker's objects behind handles, by number


def worker_object(number: int) -> Any:
    """The worker's object behind handle `number`: how a proxy inside a model the judge sends is unpickled."""
    return OBJECTS[number]


def description(module: torch.nn.Module) -> dict:
    """A new plain torch layer as data: its class name, tensors, frozen parameters and plain attributes."""
    return {"rebuild": type(module).__name__,
            "parameters": {k: detached(v) for k, v in module._parameters.items()},
            "frozen": [k for k, v in module._parameters.items() if v is not None and not v.requires_grad],
            "buffers": {k: detached(v) for k, v in module._buffers.items()},
            "attributes": {k: v for k, v in vars(module).items() if not k.startswith("_") and type(v) in DATA_TYPES}}

class Callback:
    """A judge's callable, as the worker sees it: calling it asks the judge to run it."""

    def __init__(self, number: int, server: Server) -> None:
        self.number, self.server = number, server

    def __call__(self, *args, **kwargs):
        server = self.server
        args, kwargs = server.for_judge(args, []), server.for_judge(kwargs, [])
        send(server.writer, ("callback", self.number, args, kwargs, server.take_reports()))
        kind, *rest, syncs = receive(server.reader, trusted=True)
        for sync in syncs:  # what the test's callback did to the linked models it was given
            vars(server.linked_models[sync.number]).update(vars(sync.model))
            server.mark_synced(sync.number)
        if kind == "raise":
            raise remote_exception(rest[0], rest[1])
        return server.unwrap(rest[0], [], [])


class Spy:
    """Counts the calls to a function named by its dotted path — a module's (torch._weight_int4pack_mm_for_cpu) or
    a class's (exercises.test_ex5_10_int4_kernel.Quantized.forward) — until undone; len() is the count."""

    def __init__(self, dotted: str) -> None:
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module
            try:
                owner = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        self.owner, self.name, self.calls = owner, parts[-1], 0
        self.own = vars(owner).get(self.name, Spy)  # Spy: inherited, nothing of the owner's own to put back
        original = getattr(owner, self.name)

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)
        setattr(owner, self.name, counted)

    def undo(self) -> None:
        if self.own is Spy:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self.own)

    def __len__(self) -> int:
        return self.calls


class Server:
    """The worker's end: the answer module, the objects handed out, the pipes."""

    def __init__(self, module: types.ModuleType, reader: BinaryIO, writer: BinaryIO) -> None:
        self.module, self.reader, self.writer = module, reader, writer
        self.numbers: dict[int, int] = {}  # id(object) → handle number (objects are kept: ids stay unique)
        self.spies: list[Spy] = []
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
                return OBJECTS[v.key] if v.kind == "handle" else Callback(v.key, self)
            if isinstance(v, Sent):
                for module in v.model.modules():  # the test's hooks on it: called back in the judge
                    for hooks in (module._forward_pre_hooks, module._forward_hooks):
                        hooks.update({k: Callback(h.key, self) for k, h in hooks.items() if isinstance(h, Ref)})
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
                    replaced[full] = description(child)  # a new plain torch layer: the judge builds its own
                elif child is not None:
                    replaced[full] = self.handle(child)
        return {"kept": kept, "replaced": replaced}

    def respond(self, message: tuple) -> tuple:
        op, environment, *rest = message
        if op == "backward":  # the judge's autograd reached a call that kept its graph here
            inputs, outputs = self.graphs.pop(rest[0])
            pairs = [(o, g) for o, g in zip(outputs, rest[1], strict=True) if g is not None and o.requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            return ("return", [None if t.grad is None else detached(t.grad) for t in inputs], [], [], None, {})
        for key, value in environment.items():  # the judge's values of SHARED_VARIABLES, as the test set them
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if op == "spy":
            self.spies.append(Spy(rest[0]))
            return ("return", len(self.spies) - 1, [], [], None, {})
        if op in ("spied", "unspy"):
            spy = self.spies[rest[0]]
            if op == "unspy":
                spy.undo()
            return ("return", spy.calls, [], [], None, {})
        path, args, kwargs = rest
        given: list[torch.nn.Module] = []
        needs_grad: list[torch.Tensor] = []
        args, kwargs = self.unwrap(args, given, needs_grad), self.unwrap(kwargs, given, needs_grad)
        graph = None
        originals = {id(m) for model in given for m in model.modules()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                target = self.module if path[0] is None else OBJECTS[path[0]]
                names = path[1:-1] if op == "set" else path[1:]
                for name in names:
                    target = getattr(target, name)
                if op == "call":
                    result = target(*args, **kwargs)
                elif op == "set":
                    result = setattr(target, path[-1], args[0])
                elif op == "copy":
                    result = copy.deepcopy(target)
                else:
                    result = target
                outputs = [result] if isinstance(result, torch.Tensor) else list(result) \
                    if isinstance(result, tuple) else []
                if needs_grad and any(isinstance(o, torch.Tensor) and o.requires_grad for o in outputs):
                    graph = next(self.graph_numbers)
                    self.graphs[graph] = (needs_grad, outputs)
                reply = ("return", self.for_judge(result, given))
            except BaseException as error:  # SystemExit and KeyboardInterrupt too: they end up as RuntimeError
                reply = ("raise", builtin_name(type(error)), str(error))
        said = [(builtin_name(w.category), str(w.message)) for w in caught]
        for number in self.linked_models:  # the judge's copies may be held by the test: keep them true
            self.report_linked(number)
        return (*reply, [self.report(model, originals) for model in given], said, graph, self.take_reports())


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
    protocol keeps the process's original stdin / stdout; the answer's prints go to stderr."""
    reader, writer = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, tree)
    try:
        server = Server(importlib.import_module(f"exercises.{name}"), reader, writer)
        send(writer, ("names", public_names(server)))
    except BaseException as error:  # the judge raises it on import, as an import error would be
        send(writer, ("raise", builtin_name(type(error)), f"{type(error).__name__}: {error}"))
        return
    while True:
        try:
            message = receive(reader, trusted=True)
        except BoundaryError:
            return
        send(writer, server.respond(message))
