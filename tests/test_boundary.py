"""kata.grade.boundary: the answer runs in a worker process; the judge gets plain data back, and nothing else."""

import copy
import io
import textwrap

import pytest
import torch
from torch import nn

from kata.grade.boundary import Worker, remote_module
from kata.grade.finder import worker_command
from kata.grade.protocol import BoundaryError, SpyCall, SpyCount, SpyStart, SpyStop, receive, send

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


def add_a_parameter(model):
    model.register_parameter("extra", torch.nn.Parameter(torch.ones(1)))


class Doubler(torch.nn.Module):
    def __init__(self, factor=2):
        super().__init__()
        self.factor = factor
        self.register_buffer("scale", torch.tensor(float(factor)))

    @classmethod
    def make(cls, factor):
        return cls(factor)

    def forward(self, x):
        return x * self.scale

    def describe(self):
        return f"x{self.factor}"


class Counter:
    def __init__(self):
        self.total = 0

    def add(self, n):
        self.total += n


def swap_in_doublers(model):
    for name, child in list(model.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(model, name, Doubler())
    return model


def leave_a_hook(model):
    model[0].register_forward_pre_hook(lambda module, args: None)


def cast(model):
    return model.to(torch.bfloat16)


def warn(x):
    import warnings

    warnings.warn("falls back to dequantize", UserWarning)
    return x


def add_twice(x):
    return torch.add(torch.add(x, 1), 1)


def triple(x):
    return 3 * x


def freeze_first(model):
    model[0] = torch.nn.Linear(2, 2)
    model[0].weight.requires_grad_(False)


def build_then_apply(load, apply):
    model = load()
    apply(model)
    return model.to(torch.bfloat16)


def run(model, x):
    return model(x)


def flag(x):
    return False


def uses_flag(x):
    return flag(x)
'''


def answer_module(tmp_path, source=ANSWER):
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "__init__.py").write_text("")
    (tmp_path / "exercises" / "ex9_9_fake.py").write_text(textwrap.dedent(source))
    worker = Worker(worker_command(str(tmp_path), "ex9_9_fake"))
    return worker, remote_module("exercises.ex9_9_fake", worker)


@pytest.fixture(scope="module")
def worker_and_answer(tmp_path_factory):
    """One worker for the module's tests (each starts a Python with torch: seconds)."""
    worker, module = answer_module(tmp_path_factory.mktemp("answer"))
    yield worker, module
    worker.close()


@pytest.fixture
def answer(worker_and_answer):
    return worker_and_answer[1]


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
    assert answer.double(2) == 4, "the worker is still serving"


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
    send(frame, ("return", value))
    frame.seek(0)
    with pytest.raises(BoundaryError, match="not plain data"):
        receive(frame, trusted=False)


def test_the_answer_does_not_run_in_the_judges_process(answer):
    import kata.harness.check  # noqa: F401  (loaded here, in the judge)

    assert answer.judge_modules(0) is False, "the worker has its own interpreter"


def test_a_model_passed_in_comes_back_with_the_answers_changes(answer):
    model = torch.nn.Linear(2, 3)
    before = model.weight.detach().clone()
    assert answer.scale_weights(model, 2.0) == "scaled"
    assert torch.equal(model.weight, 2 * before), "the judge's own model holds the answer's weights"


def test_a_new_parameter_on_a_module_the_judge_passed_is_an_error(answer):
    with pytest.raises(RuntimeError, match="extra"):
        answer.add_a_parameter(torch.nn.Linear(2, 3))


def test_objects_the_answer_builds_stay_in_the_worker_behind_proxies(answer):
    doubler = answer.Doubler(3)
    assert isinstance(doubler, answer.Doubler) and isinstance(doubler, nn.Module)
    assert type(doubler).__name__ == "Doubler"
    assert torch.equal(doubler(torch.ones(2)), torch.full((2,), 3.0)), "forward runs in the worker"
    assert (doubler.factor, doubler.describe(), answer.Doubler.make(4).factor) == (3, "x3", 4)
    assert sorted(doubler.state_dict()) == ["scale"]
    counter = answer.Counter()
    counter.add(2)
    counter.add(3)
    assert counter.total == 5
    counter.total = 1
    assert counter.total == 1, "an attribute written from the judge is written in the worker"


def test_a_copy_of_a_proxy_is_a_new_object_in_the_worker(answer):
    doubler = answer.Doubler(3)
    twin = copy.deepcopy(doubler)
    twin.factor = 5
    assert twin is not doubler and (doubler.factor, twin.factor) == (3, 5)


def test_submodules_the_answer_swaps_in_come_back_as_proxies_the_judge_runs(answer):
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    assert answer.swap_in_doublers(model) is model, "the judge's own model comes back, not a copy"
    assert isinstance(model[0], answer.Doubler) and type(model[1]) is nn.ReLU
    assert torch.equal(model(torch.tensor([1.0, -1.0])), torch.tensor([2.0, 0.0]))
    assert answer.cast(model) is model, "a model holding proxies goes back as itself"
    assert model[0].scale.dtype == torch.bfloat16, "the worker's Doubler moved to bfloat16"


def test_dtypes_and_hooks_the_answer_leaves_show_on_the_judges_model(answer):
    model = nn.Sequential(nn.Linear(2, 2))
    answer.cast(model)
    assert isinstance(model[0].weight, nn.Parameter) and model[0].weight.dtype == torch.bfloat16
    answer.leave_a_hook(model)
    assert len(model[0]._forward_pre_hooks) == 1, "a hook left on the worker's copy shows on the judge's model"


def test_warnings_the_answer_raises_are_raised_in_the_judge(answer):
    with pytest.warns(UserWarning, match="falls back to dequantize"):
        assert answer.warn(1) == 1


def test_a_spy_counts_the_answers_calls_to_a_torch_function_in_the_worker(worker_and_answer):
    worker, answer = worker_and_answer
    spy = worker.request(SpyStart("torch.add"))
    answer.add_twice(torch.zeros(1))
    assert worker.request(SpyCount(spy)) == 2
    assert worker.request(SpyStop(spy)) == 2
    answer.add_twice(torch.zeros(1))
    assert worker.request(SpyCount(spy)) == 2, "undone: no more counting"


def test_an_aten_spy_records_the_operands_and_result_of_each_call_in_the_worker(worker_and_answer):
    worker, answer = worker_and_answer
    spy = worker.request(SpyStart("aten.add"))
    answer.add_twice(torch.ones(1))
    assert worker.request(SpyCount(spy)) == 2
    args, result = worker.request(SpyCall(spy, 1))
    assert torch.equal(args[0], torch.tensor([2.0])) and torch.equal(result, torch.tensor([3.0]))
    worker.request(SpyStop(spy))


def test_autograd_goes_back_through_a_call_into_the_worker(answer):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (answer.triple(x) * torch.tensor([1.0, 2.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([3.0, 6.0]))


def test_a_plain_torch_layer_the_answer_builds_anew_comes_back_as_the_judges_own(answer):
    model = nn.Sequential(nn.Linear(2, 2))
    answer.freeze_first(model)
    assert type(model[0]) is nn.Linear and not model[0].weight.requires_grad


def test_a_model_from_the_tests_callable_stays_linked_both_ways(answer):
    seen = []

    def zero(model):
        seen.append(model)
        with torch.no_grad():
            model[0].weight.zero_()
    result = answer.build_then_apply(lambda: nn.Sequential(nn.Linear(2, 2)), zero)
    assert result is seen[0], "the judge's own model, not a copy"
    assert seen[0][0].weight.dtype == torch.bfloat16, "what the answer did after the callable shows"
    assert not seen[0][0].weight.any(), "what the callable did went back to the worker"


def test_the_tests_hooks_on_a_model_run_in_the_judge(answer):
    model, calls = nn.Linear(2, 2), []
    model.register_forward_hook(lambda module, args, output: calls.append(tuple(output.shape)))
    answer.run(model, torch.ones(3, 2))
    assert calls == [(3, 2)]


def test_a_name_the_test_patches_on_the_answer_module_is_patched_in_the_worker(answer, monkeypatch):
    monkeypatch.setattr(answer, "flag", lambda x: True)
    assert answer.uses_flag(1) is True
    monkeypatch.undo()
    assert answer.uses_flag(1) is False


def test_an_answer_that_cannot_import_raises_on_import(tmp_path):
    with pytest.raises(ImportError, match="no_such_module"):
        answer_module(tmp_path, "import no_such_module\n")
