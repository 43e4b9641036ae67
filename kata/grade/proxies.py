"""The judge's stand-ins for what the answer builds in its worker (kata/grade/boundary.py runs the worker).

代理：答案在 worker 里建的对象（类、实例、nn.Module、函数、答案模块本身）在评判进程里的替身；
读写属性、调用都发到 worker。
Each proxy holds its worker and a handle number; attribute reads and writes, calls and copies go to the worker
(`worker.request` / `worker.call`), so nothing of the answer ever runs in the judge.
"""
from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import torch

from kata.grade.protocol import Backward, Call, Copy, Get, Set
from kata.grade.worker import worker_object

if TYPE_CHECKING:
    from kata.grade.boundary import Worker


def number_of(value: Any) -> int | None:
    """The handle number behind a proxy (an instance, a proxy class or a callable), else None."""
    if isinstance(value, Proxy) or (isinstance(value, RemoteClass) and value._number is not None):
        return value._number
    return None


class RemoteGrad(torch.autograd.Function):
    """A call into the worker that the judge's autograd can go back through: the worker keeps the graph of its
    outputs, and backward asks it for the gradients of the judge's tensors (parameters of the worker's own modules
    get theirs there)."""

    @staticmethod
    def forward(ctx, worker: Worker, path: tuple, args: tuple, kwargs: dict, *tensors: torch.Tensor):
        value, ctx.graph = worker.request(Call(path, args, kwargs), graph=True)
        ctx.worker, ctx.count = worker, len(tensors)
        if ctx.graph is None:
            ctx.mark_non_differentiable(*[v for v in (value if isinstance(value, tuple) else (value,))
                                          if isinstance(v, torch.Tensor)])
        return value

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        if ctx.graph is None:
            return (None,) * (4 + ctx.count)
        return (None, None, None, None, *ctx.worker.request(Backward(ctx.graph, list(grads))))


class Proxy:
    """Marks the judge's proxies of the worker's objects."""

    _worker: Worker
    _number: int

    def __reduce_ex__(self, protocol):  # inside a model the judge sends: the worker's own object again
        return worker_object, (self._number,)

    def __deepcopy__(self, memo):
        return self._worker.request(Copy((self._number,)))


class RemoteClass(type):
    """The type of the judge's proxy classes: calling one builds the object in the worker; reading an attribute
    the proxy class lacks (a classmethod such as from_linear) reads the worker's class."""

    def __call__(cls, *args, **kwargs):
        return cls._worker.call((cls._number,), args, kwargs)

    def __getattr__(cls, name):
        if name.startswith("_") or cls.__dict__.get("_number") is None:
            raise AttributeError(name)
        return cls._worker.request(Get((cls._number, name)))

    def _made(cls, worker: Worker, number: int):
        """An instance of this proxy class for the worker's object `number` (without calling the worker)."""
        made = object.__new__(cls)
        if isinstance(made, torch.nn.Module):
            torch.nn.Module.__init__(made)
        object.__setattr__(made, "_worker", worker)
        object.__setattr__(made, "_number", number)
        return made


class RemoteObject(Proxy):
    """An object of the answer's that stays in the worker: attributes are read and written, calls made, there."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._worker.request(Get((self._number, name)))

    def __setattr__(self, name, value):
        self._worker.request(Set((self._number, name), value))

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        return self._worker.call((self._number,), args, kwargs)

    def __len__(self):
        return self._worker.call((self._number, "__len__"), (), {})

    def __getitem__(self, key):
        return self._worker.call((self._number, "__getitem__"), (key,), {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of the answer, in the worker>"


class RemoteCallable(Proxy):
    """A function (or bound method) of the answer's, run in the worker."""

    def __init__(self, worker: Worker, number: int, name: str) -> None:
        self._worker, self._number, self.__name__ = worker, number, name

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        return self._worker.call((self._number,), args, kwargs)

    def __repr__(self) -> str:
        return f"<answer's {self.__name__}, run in the worker>"


class RemoteModule(Proxy, torch.nn.Module):
    """An nn.Module of the answer's that stays in the worker; the judge can put it in a model and run it. A leaf
    here: its forward, state_dict, load_state_dict and dtype moves run in the worker; other attributes are read and
    written there."""

    def __getattr__(self, name):
        if name.startswith("_"):
            return torch.nn.Module.__getattr__(self, name)
        return self._worker.request(Get((self._number, name)))

    def __setattr__(self, name, value):
        if name.startswith("_") or name == "training":
            torch.nn.Module.__setattr__(self, name, value)
        else:
            self._worker.request(Set((self._number, name), value))

    def forward(self, *args, **kwargs):
        return self._worker.call((self._number,), args, kwargs)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        state = self._worker.call((self._number, "state_dict"), (), {})
        if destination is None:
            return state
        destination.update({prefix + key: value for key, value in state.items()})
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return self._worker.call((self._number, "load_state_dict"), (dict(state_dict),),
                                 {"strict": strict, "assign": assign})

    def train(self, mode: bool = True):
        object.__setattr__(self, "training", mode)
        self._worker.call((self._number, "train"), (mode,), {})
        return self


def _moved(method: str):
    def move(self, *args, **kwargs):
        return self._worker.call((self._number, method), args, kwargs)
    move.__name__ = method
    return move


for _method in ("to", "float", "half", "bfloat16", "double", "cpu", "cuda", "requires_grad_", "parameters",
                "named_parameters", "buffers", "named_buffers"):
    setattr(RemoteModule, _method, _moved(_method))


class AnswerModule(types.ModuleType):
    """The judge's view of the answer module. Setting one of its names (a test's monkeypatch.setattr) sets it in the
    worker's module too: a callable from the test is called back, a proxy is the worker's own object again."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            self.__dict__["_worker"].request(Set((None, name), value))
        types.ModuleType.__setattr__(self, name, value)
