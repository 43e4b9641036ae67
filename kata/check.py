"""Assertions for exercise tests whose failures read in the learner's terms, 中文 then English.

测试断言：失败时说明 “期望 / expected” 与 “实际 / got”，而不是一长串框架内部的回溯。
"""

from __future__ import annotations

import math

import torch


def _fmt(value: object) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 8:
            return f"tensor({value.tolist()}, dtype={value.dtype})"
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


def expect_equal(actual: object, expected: object, what: str) -> None:
    __tracebackhide__ = True
    if actual != expected:
        raise AssertionError(f"{what}: 期望 / expected {_fmt(expected)}, 实际 / got {_fmt(actual)}")


def expect_close(actual: object, expected: float, what: str, *, rel: float = 1e-6, abs: float = 0.0) -> None:
    """A number close to `expected`: |actual - expected| <= max(rel·|expected|, abs)."""
    __tracebackhide__ = True
    if isinstance(actual, torch.Tensor) and actual.numel() == 1:
        actual = actual.item()
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        raise AssertionError(f"{what}: 期望一个数 / expected a number, 实际 / got {_fmt(actual)}")
    close = actual == expected or math.isclose(actual, expected, rel_tol=rel, abs_tol=abs)
    if not close:
        raise AssertionError(f"{what}: 期望 / expected {_fmt(float(expected))}, 实际 / got {_fmt(float(actual))}"
                             f" (允许误差 / tolerance rel={rel:g}, abs={abs:g})")


def expect_tensor(actual: object, what: str, *, shape: tuple[int, ...] | None = None,
                  dtype: torch.dtype | None = None) -> None:
    __tracebackhide__ = True
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what}: 期望 torch.Tensor / expected a torch.Tensor, 实际 / got "
                             f"{type(actual).__name__}")
    if shape is not None and tuple(actual.shape) != tuple(shape):
        raise AssertionError(f"{what} 形状 / shape: 期望 / expected {tuple(shape)}, 实际 / got {tuple(actual.shape)}")
    if dtype is not None and actual.dtype != dtype:
        raise AssertionError(f"{what} dtype: 期望 / expected {dtype}, 实际 / got {actual.dtype}")


def expect_tensor_equal(actual: object, expected: torch.Tensor, what: str) -> None:
    """Exactly the same values (integer codes), reporting the first mismatch."""
    __tracebackhide__ = True
    expect_tensor(actual, what, shape=tuple(expected.shape))
    if not torch.equal(actual.to(expected.dtype), expected):
        diff = (actual.to(expected.dtype) != expected).nonzero()[0].tolist()
        index = tuple(diff)
        raise AssertionError(f"{what}: {int((actual.to(expected.dtype) != expected).sum())} 个值不同 / values "
                             f"differ; 第一个在 / first at {index}: 期望 / expected {expected[index].item()}, "
                             f"实际 / got {actual[index].item()}")


def expect_tensor_close(actual: object, expected: torch.Tensor, what: str, *, atol: float, rtol: float = 0.0) -> None:
    """Elementwise |actual - expected| <= atol + rtol·|expected|, reporting the worst element."""
    __tracebackhide__ = True
    expect_tensor(actual, what, shape=tuple(expected.shape))
    actual = actual.to(expected.dtype)
    excess = (actual - expected).abs() - (atol + rtol * expected.abs())
    if expected.numel() and excess.max() > 0:
        index = tuple(torch.unravel_index(excess.argmax(), expected.shape))
        index = tuple(int(i) for i in index)
        raise AssertionError(f"{what}: 最大偏差在 / worst element at {index}: 期望 / expected "
                             f"{expected[index].item():.6g}, 实际 / got {actual[index].item():.6g} "
                             f"(atol={atol:g}, rtol={rtol:g})")
