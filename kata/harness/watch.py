"""How an answer made its result: what is recorded around a call, and the checks that read the record.

检查“怎么做的”：在答案的调用周围记下它启动了哪些 Triton 内核、在内核之外跑了哪些 torch 算子、分配了多大的
张量；5.10 的 quantized_matmul 必须是答案自己文件里的 @triton.jit 内核直接读打包的权重，而不是先反量化再做矩阵乘。
Where an exercise is about *how* (the registry's `how`), its answer is watched around each call:
- `Record`: the launches of @triton.jit kernels (the kernel's file and the storages of its tensor arguments, on the
  GPU and in Triton's CPU interpreter alike), the matmul-family torch ops run outside any launch, and the largest
  tensor allocated outside a launch (torch ops' outputs; numpy arrays through tracemalloc);
- CHECKS[name]: which calls are watched and what their record must show. "fused_kernel" (5.10): a kernel defined
  in the answer's own file was launched with the packed weights among its arguments, the returned tensor is one
  that launch wrote, no matmul ran outside it, and from the second call on nothing of ≥ 2·N·K bytes besides the
  output was allocated (a dequantized fp16 weight is 2·N·K bytes); in Triton's CPU interpreter, also that the
  kernel read every byte of the packed weights.
The learner's self-check wraps the answer module's watched functions (`install`); in grading the worker's server
code watches each call the judge makes (kata/grade/worker.py), with the same checks and the same words.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

NUMPY_NOISE = 256 << 10  # bytes: tracemalloc also counts Python's own objects; numpy arrays count above this
MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "mv", "dot", "addmv", "linear", "_int_mm",
           "_weight_int4pack_mm", "_weight_int4pack_mm_for_cpu", "_weight_int8pack_mm", "_addmm_activation",
           "_scaled_mm", "einsum", "tensordot", "conv1d", "conv2d", "convolution"}


def _storage(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


@dataclass
class Launch:
    kernel: str  # the @triton.jit function's name
    file: str  # the file it is defined in
    storages: list[tuple[int, int]]  # (data_ptr, nbytes) of each tensor argument's storage


@dataclass(eq=False)  # records are told apart by identity (nested calls)
class Record:
    """What one watched call did."""

    watched: tuple[int, int] | None = None  # (address, bytes) of a buffer whose reads by kernels are counted
    read: Any = None  # numpy bool per byte of `watched`: read by a kernel in Triton's interpreter (None: not seen)
    launches: list[Launch] = field(default_factory=list)
    matmuls: list[str] = field(default_factory=list)  # matmul-family ops outside any launch
    allocations: dict[int, int] = field(default_factory=dict)  # storage data_ptr → bytes, outside launches
    numpy_peak: int = 0  # bytes of numpy arrays alive at once outside launches
    depth: int = 0  # > 0 inside a launch


_WATCHING: list[Record] = []  # the records of the calls being watched (nested calls: several)


class _Ops(TorchDispatchMode):
    """Every torch op while a call is watched: matmuls and fresh outputs outside launches go into the records."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outside = [r for r in _WATCHING if r.depth == 0]
        if outside:
            name = func.__name__.split(".")[0]
            inputs = {_storage(t)[0] for t in _tensors((args, kwargs)) if t.device.type != "meta"}
            for record in outside:
                if name in MATMULS:
                    record.matmuls.append(f"aten.{name}")
                for t in _tensors(out):
                    pointer, nbytes = _storage(t)
                    if pointer not in inputs:
                        record.allocations[pointer] = max(nbytes, record.allocations.get(pointer, 0))
        return out


def _hooked(run: Callable) -> Callable:
    """A Triton launcher's run() that, while calls are watched, records the launch and marks its inside."""

    @functools.wraps(run)
    def launch(self, *args, **kwargs):
        if not _WATCHING or kwargs.get("warmup"):
            return run(self, *args, **kwargs)
        fn = getattr(self, "fn", None)
        code = getattr(fn, "__code__", None)
        storages = [_storage(t) for t in _tensors((args, kwargs))]
        for record in _WATCHING:
            record.launches.append(Launch(getattr(fn, "__name__", "?"), getattr(code, "co_filename", ""), storages))
            record.depth += 1
        paused = tracemalloc.is_tracing()
        if paused:  # the interpreter's own arrays are the kernel's business
            _note_numpy_peak()
            tracemalloc.stop()
        try:
            return run(self, *args, **kwargs)
        finally:
            for record in _WATCHING:
                record.depth -= 1
            if paused:
                tracemalloc.start()
    launch.kata_watch = True
    return launch


def _note_numpy_peak() -> None:
    peak = tracemalloc.get_traced_memory()[1]
    for record in _WATCHING:
        record.numpy_peak = max(record.numpy_peak, peak)


def _counted_load(load: Callable) -> Callable:
    """The interpreter's masked load, which also marks the watched bytes it reads (Triton's CPU interpreter only:
    on a GPU nothing is seen)."""

    @functools.wraps(load)
    def masked_load(self, ptrs, mask, *args, **kwargs):
        import numpy as np

        for record in _WATCHING:
            if record.watched is not None and record.depth:
                start, size = record.watched
                width = np.dtype(load_dtype(ptrs)).itemsize
                offsets = ptrs.data.astype(np.int64)[np.broadcast_to(mask.data, ptrs.data.shape)] - start
                offsets = offsets[(offsets >= 0) & (offsets < size)]
                if record.read is None:
                    record.read = np.zeros(size, dtype=bool)
                for byte in range(width):
                    record.read[np.minimum(offsets + byte, size - 1)] = True
        return load(self, ptrs, mask, *args, **kwargs)
    masked_load.kata_watch = True
    return masked_load


def load_dtype(ptrs: Any) -> Any:
    from triton.runtime.interpreter import _get_np_dtype

    return _get_np_dtype(ptrs.get_element_ty())


@functools.cache
def hook_launches() -> bool:
    """Put the launch hook on Triton's launchers (compiled and interpreted), and the read counter on the
    interpreter's loads, once; False without Triton."""
    try:
        from triton.runtime.interpreter import InterpretedFunction, InterpreterBuilder
        from triton.runtime.jit import JITFunction
    except ImportError:
        return False
    for cls in (JITFunction, InterpretedFunction):
        if not getattr(cls.run, "kata_watch", False):
            cls.run = _hooked(cls.run)
    if not getattr(InterpreterBuilder.create_masked_load, "kata_watch", False):
        InterpreterBuilder.create_masked_load = _counted_load(InterpreterBuilder.create_masked_load)
    return True


@contextlib.contextmanager
def watching(buffer: torch.Tensor | None = None) -> Iterator[Record]:
    """Record what the code inside the block does (launches, matmuls, allocations, and which bytes of `buffer`
    a kernel reads in the interpreter)."""
    hook_launches()
    record = Record()
    if buffer is not None:
        record.watched = (buffer.data_ptr(), buffer.numel() * buffer.element_size())
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    _WATCHING.append(record)
    try:
        with _Ops():
            yield record
    finally:
        _note_numpy_peak()
        _WATCHING.remove(record)
        if started:
            tracemalloc.stop()


@dataclass(frozen=True)
class FusedKernel:
    """5.10: the answer's result comes from its own Triton kernel reading the packed weights."""

    functions: tuple[str, ...] = ("quantized_matmul",)
    modules: tuple[str, ...] = ("KernelLinear",)
    hint: str = "python -m kata hint ex5_10"

    def applies(self, args: tuple) -> bool:
        """The kernel must run for this input: x float16 / bfloat16 on CUDA or in the CPU interpreter; not while
        torch.compile traces or a CUDA graph is captured (nothing is recorded there)."""
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is None or x.dtype not in (torch.float16, torch.bfloat16) or torch.compiler.is_compiling():
            return False
        if x.is_cuda:
            return not torch.cuda.is_current_stream_capturing()
        return x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"

    def problems(self, record: Record, answer_file: str, args: tuple, result: Any, first: bool) -> list[str]:
        """What the record shows against the rule, one bilingual line each (empty: the call keeps it)."""
        x = args[0]
        weights = getattr(args[1], "qweight", None) if len(args) > 1 else None
        own = [launch for launch in record.launches if os.path.realpath(launch.file) == os.path.realpath(answer_file)]
        if weights is not None:
            own = [launch for launch in own if _storage(weights)[0] in {p for p, _ in launch.storages}]
        found = []
        if not own:
            found.append("没有启动你文件里的 @triton.jit 内核去读打包的权重 / no @triton.jit kernel defined in your "
                         "file was launched" + (" with the packed weights (weights.qweight) among its arguments"
                                                if weights is not None else ""))
        elif weights is not None and isinstance(result, torch.Tensor) and \
                _storage(result)[0] not in {p for launch in own for p, _ in launch.storages}:
            found.append("返回的张量不是内核写的 / the tensor returned is not one your kernel launch wrote: pass the "
                         "output to the kernel and return it")
        if own and weights is not None and record.read is not None and not record.read.all():
            found.append(f"内核没有读完打包的权重 / your kernel read {int(record.read.sum()):,} of the packed weights' "
                         f"{record.read.size:,} bytes: every word must be read")
        elif own and weights is not None and x.device.type == "cpu" and record.read is None:
            found.append("内核没有读打包的权重 / your kernel never loaded the packed weights")
        if record.matmuls:
            ops = ", ".join(sorted(set(record.matmuls)))
            found.append(f"在内核之外做了矩阵乘 / a matmul ran outside the kernel: {ops}")
        if not first and isinstance(result, torch.Tensor):
            limit = 2 * x.shape[-1] * result.shape[-1]
            kept = _storage(result)[0]
            numpy = record.numpy_peak if record.numpy_peak > NUMPY_NOISE else 0
            largest = max([b for p, b in record.allocations.items() if p != kept] + [numpy])
            if largest >= limit:
                found.append(f"分配了 {largest:,} 字节（≥ 2·N·K = {limit:,}），那是反量化出来的权重 / allocated "
                             f"{largest:,} bytes besides the output (≥ 2·N·K = {limit:,}): a dequantized weight")
        return [f"规则 / rule (5.10 的内核 / the fused kernel): {line}; 见 / see {self.hint}" for line in found]


CHECKS: dict[str, FusedKernel | None] = {
    "fused_kernel": FusedKernel(),
    "fused_path": None,  # 5.3: its tests compare the fused op's own result on the recorded operands (OpSpy)
}



class Watched:
    """Calls of one answer module that its exercise's checks watch; `call` runs one and raises AssertionError with
    the rule's words when its record breaks the rule."""

    def __init__(self, module: ModuleType, how: tuple[str, ...]) -> None:
        self.file = module.__file__ or ""
        self.checks = [CHECKS[name] for name in how if CHECKS.get(name) is not None]
        self.targets: dict[int, FusedKernel] = {}  # id of a watched function or class → its check
        self.seen: set[tuple] = set()  # (target, weights) pairs already called once
        for check in self.checks:
            for name in (*check.functions, *check.modules):
                target = getattr(module, name, None)
                if target is not None:
                    self.targets[id(target)] = check

    def check_for(self, target: Any) -> FusedKernel | None:
        """The check watching `target` (a watched function, or an instance of a watched class), else None."""
        check = self.targets.get(id(target))
        return check if check is not None else self.targets.get(id(type(target)))

    def call(self, target: Any, run: Callable[[], Any], args: tuple) -> Any:
        check = self.check_for(target)
        if check is None or not check.applies(args):
            return run()
        key = (id(target) if id(target) in self.targets else id(type(target)),
               id(getattr(args[1], "qweight", None)) if len(args) > 1 else id(target))
        first = key not in self.seen  # a first call may build caches or time candidate launches
        self.seen.add(key)
        weights = getattr(args[1], "qweight", None) if len(args) > 1 else None
        with watching(weights) as record:
            result = run()
        found = check.problems(record, self.file, args, result, first)
        if found:
            raise AssertionError("\n".join(found))
        return result


def install(module: ModuleType, how: tuple[str, ...]) -> Watched | None:
    """The learner's self-check: wrap the module's watched functions and classes' forward in place."""
    watched = Watched(module, how)
    if not watched.targets:
        return None
    for check in watched.checks:
        for name in check.functions:
            original = getattr(module, name, None)
            if callable(original) and not getattr(original, "kata_watch", False):
                wrapper = _wrapped(watched, original, original)
                setattr(module, name, wrapper)
        for name in check.modules:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and not getattr(cls.forward, "kata_watch", False):
                cls.forward = _wrapped(watched, cls, cls.forward, method=True)
    return watched


def _wrapped(watched: Watched, target: Any, function: Callable, method: bool = False) -> Callable:
    @functools.wraps(function)
    def call(*args, **kwargs):
        __tracebackhide__ = True
        shown = args[1:] if method else args
        owner = args[0] if method else target
        return watched.call(owner, lambda: function(*args, **kwargs), shown)
    call.kata_watch = True
    return call
