"""The check helpers: the learner's value is "got", the target "expected", and NaN or ±inf never passes."""

import math

import pytest
import torch

from kata.harness.check import (
    expect_at_least,
    expect_at_most,
    expect_close,
    expect_equal,
    expect_tensor_close,
    expect_tensor_equal,
    raises,
)
from kata.validate import check_group_size

NAN = float("nan")


@pytest.mark.parametrize("check", [
    lambda: expect_tensor_close(torch.full((3,), NAN), torch.zeros(3), "t", atol=1.0),
    lambda: expect_tensor_close(torch.tensor([0.0, math.inf]), torch.zeros(2), "t", atol=1e9),
    lambda: expect_tensor_equal(torch.tensor([NAN]), torch.tensor([NAN]), "t"),
    lambda: expect_close(NAN, 1.0, "x", abs=1e9),
    lambda: expect_close(math.inf, 1.0, "x", abs=1e9),
    lambda: expect_at_most(NAN, 1.0, "x"),
    lambda: expect_at_most(-math.inf, 1.0, "x"),
    lambda: expect_at_least(NAN, 1.0, "x"),
    lambda: expect_equal(NAN, NAN, "x"),
], ids=["tensor_close-nan", "tensor_close-inf", "tensor_equal-nan", "close-nan", "close-inf", "at_most-nan",
        "at_most-inf", "at_least-nan", "equal-nan"])
def test_every_helper_rejects_non_finite_values(check):
    with pytest.raises(AssertionError):
        check()


def test_non_finite_values_pass_only_when_asked_for():
    expect_tensor_close(torch.tensor([math.inf]), torch.tensor([math.inf]), "t", atol=0, finite=False)
    expect_close(math.inf, math.inf, "SQNR of an exact round trip")  # an infinite target is met by infinity


def test_a_bound_reads_expected_bound_and_got_the_learners_value():
    with pytest.raises(AssertionError, match=r"expected at most 0\.241474, 实际 / got 0\.48262"):
        expect_at_most(0.48262, 0.241474, "max |x - x̂|")
    with pytest.raises(AssertionError, match=r"expected at least 3, 实际 / got 2"):
        expect_at_least(2, 3, "gain")


def test_a_close_miss_names_the_target_as_expected():
    with pytest.raises(AssertionError, match=r"expected 14, 实际 / got 7"):
        expect_close(7.0, 14.0, "GB")


def test_the_worst_element_is_reported():
    with pytest.raises(AssertionError, match=r"worst element at \(1,\).*expected 0, 实际 / got 5"):
        expect_tensor_close(torch.tensor([0.5, 5.0]), torch.zeros(2), "t", atol=1.0)


class Both(TypeError, ValueError):
    """One class to pass every bad-input test, whatever type it asks for."""


@pytest.mark.parametrize("kind", [ValueError, TypeError])
def test_raises_takes_exactly_the_type_asked_for_not_a_subclass(kind):
    with pytest.raises(AssertionError, match=f"exactly {kind.__name__}.*got Both"):
        with raises(kind, match="x", valid=lambda: None):
            raise Both("x")


def test_raises_passes_the_exact_type_and_checks_the_message():
    with raises(ValueError, match="x", valid=lambda: None) as info:
        raise ValueError("x must be positive")
    assert str(info.value) == "x must be positive"
    with pytest.raises(AssertionError, match="Regex"), raises(ValueError, match="y", valid=lambda: None):
        raise ValueError("x must be positive")


def refuse_everything() -> None:
    raise ValueError("x must be positive")


def test_raises_fails_an_answer_that_also_refuses_the_valid_input():
    with pytest.raises(AssertionError, match=r"valid input must not raise.*ValueError: x must be positive"):
        with raises(ValueError, match="x", valid=refuse_everything):
            refuse_everything()


def test_raises_lets_a_stub_through_as_not_started():
    def stub() -> None:
        raise NotImplementedError("kata hint: start here")
    with pytest.raises(NotImplementedError, match="kata hint"), raises(ValueError, valid=stub):
        stub()


@pytest.mark.parametrize(("group_size", "in_features", "expected"), [(None, 576, 576), (64, 576, 64), (1, 7, 1),
                                                                      (576, 576, 576)])
def test_a_group_size_that_divides_the_row_is_kept_and_none_is_the_whole_row(group_size, in_features, expected):
    assert check_group_size(group_size, in_features) == expected


@pytest.mark.parametrize("group_size", [0, -32, 128, 64.0, True, "64"])
def test_a_group_size_that_does_not_split_the_row_is_a_value_error_naming_it(group_size):
    with pytest.raises(ValueError, match=r"\bgroup_size\b"):
        check_group_size(group_size, 576)


def test_a_layout_may_ask_group_sizes_to_be_a_multiple_of_a_tile():
    assert check_group_size(32, 128, multiple_of=16) == 32
    with pytest.raises(ValueError, match="multiple of 16"):
        check_group_size(8, 128, multiple_of=16)
