"""Input checks with clear, bilingual errors that name the argument.

输入检查：错误信息写明是哪个参数、期望什么、实际收到什么。Exercises may call these; they hold no answers.
"""

from __future__ import annotations

from collections.abc import Collection

import torch


def check_float_tensor(x: object, name: str = "x", *, allow_empty: bool = True) -> None:
    """Raise TypeError unless `x` is a floating-point tensor; ValueError if it holds NaN or ±inf."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} 必须是 torch.Tensor / {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} 必须是浮点张量 / {name} must be a floating-point tensor, got dtype {x.dtype}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} 不能为空 / {name} must not be empty, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} 含有 NaN 或无穷大 / {name} contains {bad} NaN or infinite value(s)")


def check_num_bits(num_bits: object, low: int = 2, high: int = 8, name: str = "num_bits") -> None:
    """Raise ValueError unless `num_bits` is an int in [low, high]."""
    if isinstance(num_bits, bool) or not isinstance(num_bits, int) or not low <= num_bits <= high:
        raise ValueError(f"{name} 必须是 {low}..{high} 的整数 / {name} must be an int in {low}..{high}, "
                         f"got {num_bits!r}")


def check_choice(value: object, choices: Collection[str], name: str) -> None:
    """Raise ValueError unless `value` is one of `choices` (listed in the message)."""
    if value not in choices:
        raise ValueError(f"未知的 {name} / unknown {name} {value!r}; 可选 / valid: {', '.join(sorted(choices))}")


def check_positive_int(value: object, name: str) -> None:
    """Raise ValueError unless `value` is an int ≥ 1 (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} 必须是正整数 / {name} must be a positive int, got {value!r}")


def check_positive(value: object, name: str) -> None:
    """Raise ValueError unless `value` is a positive real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} 必须是正数 / {name} must be a positive number, got {value!r}")


def check_group_size(group_size: object, in_features: int, name: str = "group_size", *,
                     multiple_of: int = 1) -> int:
    """The number of input columns per group: `group_size` itself when it is an int ≥ 1 that divides in_features
    (and is a multiple of `multiple_of`); None means one group per row and gives in_features. Anything else is a
    ValueError naming the argument. 分组大小：None 表示整行一组；否则必须是能整除 in_features 的正整数。"""
    if group_size is None:
        return in_features
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"{name} 必须是正整数或 None（整行一组）/ {name} must be a positive int or None (one group "
                         f"per row), got {group_size!r}")
    if in_features % group_size or group_size % multiple_of:
        rule = f" and be a multiple of {multiple_of}" if multiple_of > 1 else ""
        raise ValueError(f"{name} 必须整除 in_features={in_features} / {name} must divide in_features={in_features}"
                         f"{rule}, got {group_size}")
    return group_size
