"""The wire between a grade's judging process and the answer's worker (kata/grade/boundary.py, kata/grade/worker.py).

评分进程与答案 worker 之间的协议：每种消息一个 dataclass；消息用 torch.save 写、torch.load 读；从 worker 来的只能是
普通数据（weights_only，逐个检查确切类型）。Messages are typed (one dataclass per kind, below) and travel as
length-prefixed torch.save frames. What the judge sends is trusted; what the worker sends is read with
torch.load(weights_only=True) and must be plain data of exact types: real strided CPU / CUDA tensors, numbers,
strings, None, dtypes, devices, sizes, tuples / lists / dicts of them, the three markers (Handle, Given, Linked)
and the worker's own message types (Names, Return, Raise, Callback), whose fields are checked the same way.
"""

from __future__ import annotations

import builtins
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import torch

DATA_TYPES = (int, float, bool, str, complex, type(None), torch.dtype, torch.device, torch.Size)
SHARED_VARIABLES = ("TRITON_INTERPRET",)  # environment the tests switch (monkeypatch.setenv): the worker follows


class BoundaryError(RuntimeError):
    """The worker broke the protocol (died, or sent something that is not plain data)."""


def send(stream: BinaryIO, message: object) -> None:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO, trusted: bool) -> Any:
    """The next message; from the worker (trusted=False) only plain data, checked for exact types."""
    head = stream.read(8)
    if len(head) < 8:
        raise BoundaryError("答案进程退出了 / the answer's worker process exited")
    data = stream.read(struct.unpack("<Q", head)[0])
    if trusted:
        return torch.load(io.BytesIO(data), weights_only=False)
    try:
        return plain(torch.load(io.BytesIO(data), weights_only=True))
    except Exception as error:
        raise BoundaryError(f"答案送回的不是普通数据 / the answer sent back something that is not plain data: "
                            f"{type(error).__name__}: {error}") from None


@dataclass(frozen=True)
class Handle:
    """An object that stays in the worker: its number there, what it is ("module", "object", "callable", "class"
    or "module class") and its class's name and key (module.qualname: one proxy class per key)."""

    number: int
    kind: str
    name: str
    key: str


@dataclass(frozen=True)
class Given:
    """In a result: the judge's own model number `index` of those it passed in (not a copy of it)."""

    index: int


@dataclass(frozen=True)
class Linked:
    """In a result or a callback's arguments: the judge's model `number` of those its callbacks returned (a
    load_model's): the worker's copy of it, whose changes come with the message."""

    number: int


# --- the judge's requests (trusted) ------------------------------------------------------------------------------
# A path names an object in the worker: (None, name, …) starts at the answer module, (handle number, name, …) at an
# object behind a handle.

@dataclass
class Call:
    path: tuple
    args: tuple
    kwargs: dict


@dataclass
class Get:
    path: tuple


@dataclass
class Set:
    path: tuple
    value: Any


@dataclass
class Copy:
    path: tuple


@dataclass
class Backward:
    """The judge's autograd reached a call whose graph the worker kept: the gradients of its outputs."""

    graph: int
    grads: list


@dataclass
class SpyStart:
    dotted: str


@dataclass
class SpyCount:
    number: int


@dataclass
class SpyCall:
    number: int
    index: int


@dataclass
class SpyStop:
    number: int


@dataclass
class Request:
    """One of the messages above, with the judge's values of SHARED_VARIABLES as the test set them."""

    message: Call | Get | Set | Copy | Backward | SpyStart | SpyCount | SpyCall | SpyStop
    environment: dict


@dataclass
class CallbackReply:
    """The judge's answer to a Callback: its value (or `error` = (exception name, text)) and the linked models
    the callable changed."""

    value: Any
    error: tuple | None
    syncs: list


# --- the worker's messages (checked as plain data) ---------------------------------------------------------------

@dataclass
class Names:
    """After import: the answer module's public names (handles) and data; or the import's error."""

    names: dict
    error: tuple | None = None


@dataclass
class Return:
    value: Any
    reports: list  # one per model the judge sent: what the answer left in it (Server.report)
    said: list  # (warning class name, text) of each warning the answer raised
    graph: int | None  # the graph kept for the judge's backward, if any
    linked: dict  # link number → report, for the linked models


@dataclass
class Raise:
    kind: str  # the nearest built-in exception class
    text: str
    reports: list
    said: list
    linked: dict


@dataclass
class Callback:
    """The answer calls a callable of the judge's: run it there."""

    number: int
    args: tuple
    kwargs: dict
    linked: dict


MESSAGES = (Names, Return, Raise, Callback)
torch.serialization.add_safe_globals([Handle, Given, Linked, *MESSAGES])  # the only classes besides tensors


def _real_tensor(value: torch.Tensor) -> torch.Tensor:
    """A tensor with values: strided, on the CPU or a GPU (not meta, sparse, nested or quantized)."""
    if value.layout is not torch.strided or value.device.type not in ("cpu", "cuda") or value.is_nested \
            or value.is_quantized:
        raise TypeError(f"不是有值的普通张量 / not a tensor with values: layout {value.layout}, device "
                        f"{value.device}")
    return value


def plain(value: Any) -> Any:
    """value itself, if it is plain data of exact types all the way down; else a TypeError."""
    kind = type(value)
    if kind is torch.Tensor:
        return _real_tensor(value)
    if kind in DATA_TYPES:
        return value
    if kind in MESSAGES:
        for name in value.__dataclass_fields__:
            plain(getattr(value, name))
        return value
    if kind in (tuple, list):
        return kind(plain(v) for v in value)
    if kind is dict:
        return {plain(k): plain(v) for k, v in value.items()}
    if kind is Handle and type(value.number) is int and all(type(v) is str for v in (value.kind, value.name,
                                                                                        value.key)):
        return value
    if (kind is Given and type(value.index) is int) or (kind is Linked and type(value.number) is int):
        return value
    raise TypeError(f"{kind.__module__}.{kind.__qualname__} 不是普通数据 / is not plain data")


def remote_exception(name: str, message: str) -> Exception:
    """The built-in exception class `name` (RuntimeError for anything that is not an Exception class: an answer's
    SystemExit must not stop the judge) with the message."""
    cls = getattr(builtins, name, None)
    return (cls if isinstance(cls, type) and issubclass(cls, Exception) else RuntimeError)(message)


def builtin_name(cls: type) -> str:
    """The name of the first built-in class in cls's method resolution order."""
    return next((c.__name__ for c in cls.__mro__ if getattr(builtins, c.__name__, None) is c), "Exception")


def map_nested(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """leaf applied to everything inside nested tuples, lists and dicts (their values), the containers rebuilt."""
    if type(value) in (tuple, list):
        return type(value)(map_nested(v, leaf) for v in value)
    if isinstance(value, dict):  # a state_dict (an OrderedDict) comes back a plain dict
        return {k: map_nested(v, leaf) for k, v in value.items()}
    return leaf(value)


def detached(value: Any) -> Any:
    return value.detach().as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else value


@dataclass(frozen=True)
class Ref:
    """In the judge's arguments, where a proxy or a callable was: the worker's object `key` ("handle"), or the
    judge's callable number `key`, to be called back ("callback")."""

    kind: str
    key: int


@dataclass
class NeedsGrad:
    """In the judge's arguments, a tensor autograd must reach: the worker's copy requires grad."""

    tensor: torch.Tensor


@dataclass
class Link:
    """From the judge: a model a callback of the test returned (number `number`), linked to the worker's copy."""

    number: int
    model: torch.nn.Module


@dataclass
class Sync:
    """From the judge: its linked model `number` as a callback left it; the worker's copy takes its contents."""

    number: int
    model: torch.nn.Module


@dataclass
class Sent:
    """In the judge's arguments, a model of the judge's (number `index`): copied to the worker, changes come back."""

    index: int
    model: torch.nn.Module


REBUILT = ("Linear", "Embedding")  # plain torch layers an answer builds anew (5.9's freeze): rebuilt in the judge


def describe(module: torch.nn.Module) -> dict:
    """A new plain torch layer as data: its class name, tensors, frozen parameters and plain attributes."""
    return {"rebuild": type(module).__name__,
            "parameters": {k: detached(v) for k, v in module._parameters.items()},
            "frozen": [k for k, v in module._parameters.items() if v is not None and not v.requires_grad],
            "buffers": {k: detached(v) for k, v in module._buffers.items()},
            "attributes": {k: v for k, v in vars(module).items() if not k.startswith("_") and type(v) in DATA_TYPES}}
