"""kata.grade.boundary: the answer runs in a worker process; the judge gets plain data back, and nothing else."""

import io
import textwrap

import pytest
import torch

from kata.grade.boundary import BoundaryError, Worker, _receive, _send, remote_module, worker_command

ANSWER = '''
import sys

import torch


class Both(TypeError, ValueError):
    pass


LEVELS = (4, 8)


def data(x):
    print("a print must not break the protocol")
    return x * 2, {"dtype": x.dtype, "n": x.numel(), "ok": True}, [torch.nn.Parameter(x.clone())]


def twice(fn, x):
    return fn(fn(x))


def apply_own(x):
    return twice(double, x)


def double(x):
    return 2 * x


def both(x):
    raise Both(f"x is bad: {x}")


def leave(x):
    sys.exit(0)


def judge_modules(x):
    return "kata.harness.check" in sys.modules


def scale_weights(model, factor):
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(factor)
    return "scaled"


def add_a_layer(model):
    model.extra = torch.nn.Linear(1, 1)
'''


def answer_module(tmp_path, source=ANSWER):
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "__init__.py").write_text("")
    (tmp_path / "exercises" / "ex9_9_fake.py").write_text(textwrap.dedent(source))
    worker = Worker(worker_command(str(tmp_path), "ex9_9_fake"))
    return worker, remote_module("exercises.ex9_9_fake", worker)


@pytest.fixture
def answer(tmp_path):
    worker, module = answer_module(tmp_path)
    yield module
    worker.close()


def test_results_come_back_as_plain_data_of_exact_types(answer):
    doubled, info, params = answer.data(torch.arange(3.0))
    assert type(doubled) is torch.Tensor and torch.equal(doubled, torch.tensor([0.0, 2.0, 4.0]))
    assert info == {"dtype": torch.float32, "n": 3, "ok": True}
    assert type(params[0]) is torch.Tensor, "a Parameter crosses as a plain tensor"
    assert answer.LEVELS == (4, 8), "constants cross as data"


def test_a_callable_from_the_test_is_called_back_in_the_judge(answer):
    seen = []

    def add_one(x):
        seen.append(x)
        return x + 1

    assert answer.twice(add_one, 5) == 7
    assert seen == [5, 6], "the judge ran the callback, twice"


def test_the_answers_own_function_passed_in_runs_in_the_worker(answer):
    assert answer.twice(answer.double, 3) == 12
    assert answer.apply_own(1) == 4


def test_an_exception_crosses_as_its_first_builtin_type(answer):
    with pytest.raises(TypeError, match="x is bad: 1") as info:
        answer.both(1)
    assert type(info.value) is TypeError, "not the answer's class, and not a ValueError"


def test_an_answer_that_exits_raises_a_runtime_error_in_the_judge(answer):
    with pytest.raises(RuntimeError):
        answer.leave(0)


class Sneaky(torch.Tensor):
    """Would compare equal to anything, if it ever reached an assertion."""


class SneakyFloat(float):
    pass


@pytest.mark.parametrize("value", [torch.ones(2).as_subclass(Sneaky), SneakyFloat(1.0), [torch.nn.Parameter(
    torch.ones(1))]])
def test_the_judge_takes_only_plain_data_of_exact_types(value):
    """What a worker that the answer took over could send: torch.load(weights_only=True) refuses foreign classes,
    and a Parameter (which it does load) fails the exact-type check."""
    frame = io.BytesIO()
    _send(frame, ("return", value))
    frame.seek(0)
    with pytest.raises(BoundaryError, match="not plain data"):
        _receive(frame, trusted=False)


def test_the_answer_does_not_run_in_the_judges_process(answer):
    import kata.harness.check  # noqa: F401  (loaded here, in the judge)

    assert answer.judge_modules(0) is False, "the worker has its own interpreter"


def test_a_model_passed_in_comes_back_with_the_answers_changes(answer):
    model = torch.nn.Linear(2, 3)
    before = model.weight.detach().clone()
    assert answer.scale_weights(model, 2.0) == "scaled"
    assert torch.equal(model.weight, 2 * before), "the judge's own model holds the answer's weights"


def test_a_model_whose_structure_the_answer_changed_is_an_error(answer):
    with pytest.raises(RuntimeError, match="extra"):
        answer.add_a_layer(torch.nn.Linear(2, 3))


def test_an_answer_that_cannot_import_raises_on_import(tmp_path):
    with pytest.raises(ImportError, match="no_such_module"):
        answer_module(tmp_path, "import no_such_module\n")
