"""Assertions for exercise tests whose failures read in the learner's terms, 中文 then English.

测试断言：失败时说明 “期望 / expected”（目标或界限）与 “实际 / got”（你的代码算出的值），而不是一长串
框架内部的回溯。"got" is always the learner's value, "expected" the target or the bound. Every helper
rejects NaN and ±inf in the learner's value unless `finite=False` is passed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import pytest
import torch


def _fmt(value: object) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 8:
            return f"tensor({value.tolist()}, dtype={value.dtype})"
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


def _number(actual: object, what: str, finite: bool) -> float:
    """The learner's value as a float, or an AssertionError saying why it is not a usable number."""
    __tracebackhide__ = True
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        actual = actual.item()
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        raise AssertionError(f"{what}: 期望一个数 / expected a number, 实际 / got {_fmt(actual)}")
    if math.isnan(actual) or (finite and math.isinf(actual)):
        raise AssertionError(f"{what}: 期望有限的数 / expected a finite number, 实际 / got {actual}")
    return float(actual)


def _finite_tensor(actual: torch.Tensor, what: str) -> None:
    __tracebackhide__ = True
    if not actual.is_floating_point():
        return
    values = actual.float() if actual.element_size() == 1 else actual  # fp8: isfinite needs a wider float
    if not torch.isfinite(values).all():
        bad = (~torch.isfinite(values)).nonzero()[0].tolist()
        raise AssertionError(f"{what}: {int((~torch.isfinite(values)).sum())} 个值是 NaN 或无穷大 / values are NaN "
                             f"or infinite; 第一个在 / first at {tuple(bad)}: {values[tuple(bad)].item()}")


@contextlib.contextmanager
def raises(kind: type[BaseException], match: str | None = None, *,
           valid: Callable[[], object]) -> Iterator[pytest.ExceptionInfo]:
    """pytest.raises(kind, match=...) paired with a valid call, the nearest input that must be accepted.

    `valid()` runs first and must not raise: an answer that raises on everything passes no bad-input test. Then the
    block must raise exactly `kind`, not a subclass: a class deriving from both TypeError and ValueError would
    otherwise pass every bad-input test. 先调用一次合法输入（不能报错），再要求错误输入恰好抛出这个异常类型。"""
    __tracebackhide__ = True
    try:
        valid()
    except NotImplementedError:
        raise  # a stub: the plugin reports it as "not started"
    except Exception as error:
        raise AssertionError(f"合法输入不应报错 / a valid input must not raise: 实际 / got {type(error).__name__}: "
                             f"{error}") from error
    with pytest.raises(kind, match=match) as info:
        yield info
    if type(info.value) is not kind:
        raise AssertionError(f"期望恰好是 / expected exactly {kind.__name__}, 实际 / got {type(info.value).__name__} "
                             f"(a subclass): raise {kind.__name__}(...) itself")


def expect_equal(actual: object, expected: object, what: str) -> None:
    __tracebackhide__ = True
    if isinstance(actual, float) and math.isnan(actual):
        raise AssertionError(f"{what}: 期望 / expected {_fmt(expected)}, 实际 / got NaN")
    if actual != expected:
        raise AssertionError(f"{what}: 期望 / expected {_fmt(expected)}, 实际 / got {_fmt(actual)}")


def expect_close(actual: object, expected: float, what: str, *, rel: float = 1e-6, abs: float = 0.0,
                 finite: bool = True) -> None:
    """A number close to `expected`: |actual - expected| <= max(rel·|expected|, abs). An infinite `expected`
    (say, SQNR of an exact round trip) is met only by the same infinity."""
    __tracebackhide__ = True
    actual = _number(actual, what, finite=finite and math.isfinite(expected))
    close = actual == expected or math.isclose(actual, expected, rel_tol=rel, abs_tol=abs)
    if not close:
        raise AssertionError(f"{what}: 期望 / expected {_fmt(float(expected))}, 实际 / got {_fmt(actual)}"
                             f" (允许误差 / tolerance rel={rel:g}, abs={abs:g})")


def expect_at_most(actual: object, bound: float, what: str) -> None:
    """The learner's number is at most `bound` (an error below a limit, a ratio under a target)."""
    __tracebackhide__ = True
    actual = _number(actual, what, finite=True)
    if not actual <= bound:
        raise AssertionError(f"{what}: 期望 ≤ / expected at most {_fmt(float(bound))}, 实际 / got {_fmt(actual)}")


def expect_at_least(actual: object, bound: float, what: str) -> None:
    """The learner's number is at least `bound` (a gain above a floor)."""
    __tracebackhide__ = True
    actual = _number(actual, what, finite=math.isfinite(bound))
    if not actual >= bound:
        raise AssertionError(f"{what}: 期望 ≥ / expected at least {_fmt(float(bound))}, 实际 / got {_fmt(actual)}")


def expect_tensor(actual: object, what: str, *, shape: tuple[int, ...] | None = None,
                  dtype: torch.dtype | None = None, finite: bool = True) -> None:
    """A real tensor (values on the CPU or a GPU: not meta, sparse or nested) of this shape and dtype, its floating
    values finite unless `finite=False`."""
    __tracebackhide__ = True
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what}: 期望 torch.Tensor / expected a torch.Tensor, 实际 / got "
                             f"{type(actual).__name__}")
    if actual.layout is not torch.strided or actual.device.type not in ("cpu", "cuda") or actual.is_nested:
        raise AssertionError(f"{what}: 期望有值的张量 / expected a tensor with values, 实际 / got layout "
                             f"{actual.layout} on {actual.device}")
    if shape is not None and tuple(actual.shape) != tuple(shape):
        raise AssertionError(f"{what} 形状 / shape: 期望 / expected {tuple(shape)}, 实际 / got {tuple(actual.shape)}")
    if dtype is not None and actual.dtype != dtype:
        raise AssertionError(f"{what} dtype: 期望 / expected {dtype}, 实际 / got {actual.dtype}")
    if finite:
        _finite_tensor(actual, what)


def expect_tensor_equal(actual: object, expected: torch.Tensor, what: str, *, finite: bool = True) -> None:
    """Exactly the same values (integer codes), reporting the first mismatch."""
    __tracebackhide__ = True
    expect_tensor(actual, what, shape=tuple(expected.shape), finite=finite)
    same = actual.to(expected.dtype) == expected
    if not same.all():
        index = tuple((~same).nonzero()[0].tolist())
        raise AssertionError(f"{what}: {int((~same).sum())} 个值不同 / values differ; 第一个在 / first at {index}: "
                             f"期望 / expected {expected[index].item()}, 实际 / got {actual[index].item()}")


def expect_tensor_close(actual: object, expected: torch.Tensor, what: str, *, atol: float, rtol: float = 0.0,
                        finite: bool = True) -> None:
    """Elementwise |actual - expected| <= atol + rtol·|expected|, reporting the worst element."""
    __tracebackhide__ = True
    expect_tensor(actual, what, shape=tuple(expected.shape), finite=finite)
    actual = actual.to(expected.dtype)
    excess = (actual - expected).abs() - (atol + rtol * expected.abs())
    excess = torch.where(actual == expected, -1.0, excess.nan_to_num(nan=math.inf))  # equal infinities agree
    if expected.numel() and excess.max() > 0:
        index = tuple(int(i) for i in torch.unravel_index(excess.argmax(), expected.shape))
        raise AssertionError(f"{what}: 最大偏差在 / worst element at {index}: 期望 / expected "
                             f"{expected[index].item():.6g}, 实际 / got {actual[index].item():.6g} "
                             f"(atol={atol:g}, rtol={rtol:g})")


def _distinct_per_group(w: torch.Tensor, group_size: int) -> int:
    """The largest number of distinct values in any (row, group) of w (kata.oracles.distinct_per_group's count, all
    groups at once: a real model's millions of groups take seconds, not minutes)."""
    if w.dim() != 2 or w.shape[1] % group_size:
        raise AssertionError(f"权重形状 / weight shape {tuple(w.shape)}: 期望 (out, in)，in 是 {group_size} 的倍数 / "
                             f"expected (out, in) with in a multiple of {group_size}")
    ordered = w.detach().reshape(w.shape[0], -1, group_size).sort(dim=-1).values
    return int((1 + (ordered.diff(dim=-1) != 0).sum(dim=-1)).max())


def expect_linears_on_grid(model: torch.nn.Module, num_bits: int, group_size: int, what: str = "") -> int:
    """Every `*_proj` linear of `model` holds at most 2^num_bits distinct values in each group of `group_size`
    input columns; returns how many it checked, and fails when the model has none (a loop that saw nothing)."""
    __tracebackhide__ = True
    checked = 0
    for name, module in model.named_modules():
        if name.endswith("_proj"):
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor):
                raise AssertionError(f"{what}{name}: 期望浮点权重 / expected a float weight, 实际 / got "
                                     f"{type(module).__name__} without one")
            distinct = _distinct_per_group(weight, group_size)
            if distinct > 2**num_bits:
                raise AssertionError(f"{what}{name}: 不在 {num_bits} 比特网格上 / not on a {num_bits}-bit grid: "
                                     f"期望每组至多 / expected at most {2**num_bits} distinct values per group of "
                                     f"{group_size}, 实际 / got {distinct}")
            checked += 1
    if not checked:
        raise AssertionError(f"{what}模型里没有 *_proj 线性层 / the model has no *_proj linear to check")
    return checked


def expect_beats_rtn_on_the_real_model(record_property, label: str, model: torch.nn.Module, quantize,
                                       reference: tuple[torch.Tensor, list[torch.Tensor]], ratio: float = 0.75) -> None:
    """`quantize(model)` (in place, W4 g64) must land at most `ratio` × plain RTN's KL to the float baseline on the
    evaluation windows of `reference` = (ids, baseline log-probs); both KLs are recorded as measured. The model
    measured must be the quantized one: every `*_proj` linear on the W4 g64 grid (a float model's KL is 0)."""
    __tracebackhide__ = True
    from kata.oracles import kl_against_rtn

    ids, baseline = reference

    def quantized_on_the_grid(m: torch.nn.Module) -> None:  # checked before the evaluation it would make pointless
        __tracebackhide__ = True
        quantize(m)
        expect_linears_on_grid(m, 4, 64, f"{label}, the model whose KL is measured: ")

    ours, theirs = kl_against_rtn(model, quantized_on_the_grid, ids, baseline)
    record_property("measured", f"{label} W4 g64 KL to the baseline: {ours:.4f}, RTN {theirs:.4f}")
    expect_at_most(ours, ratio * theirs, f"{label}'s KL to the baseline (RTN: {theirs:.4f})")
