"""kata.lab.format_registry: a format is one class, registered by being defined; each builds from the target's code.

Adding a format: its class in kata/lab/format_registry.py, its bits per weight on SmolLM2's linears in BITS below.
"""

import types

import pytest
import torch

from kata.harness import target
from kata.lab import format_registry
from kata.lab.format_registry import FORMATS, LabFormat
from kata.llama import Llama, LlamaConfig, tiny_llama

# Each format's bits per weight (1.1's formula) over SmolLM2-135M's linears, as section 7's table prints it.
BITS = {"BF16": "16.000", "FP8 E4M3 weight-only": "8.047", "W8A16 int8 per channel": "8.023",
        "W8A8 naive, per-tensor": "8.047", "W8A8 naive, per-token": "8.047", "W8A8 SmoothQuant, per-tensor": "8.047",
        "W8A8 SmoothQuant, per-token": "8.047", "W4A16 RTN g64": "4.375", "NF4 g64": "4.250",
        "Q8_0 (GGUF)": "8.500", "Q4_0 (GGUF)": "4.500", "Q4_1 (GGUF)": "5.000", "MXFP4 (GGUF)": "4.250",
        "NVFP4 (GGUF)": "4.500"}


def reference_context() -> types.SimpleNamespace:
    """What a format takes from the lab's Context: the target's exercise modules (here the reference's) and the
    calibration windows (here random ids for the tiny model)."""
    calib = torch.randint(0, LlamaConfig.tiny().vocab_size, (32, 16), generator=torch.Generator().manual_seed(0))
    return types.SimpleNamespace(module=lambda name: target.exercise_module("reference", name), calib_ids=calib)


def block_linears(model: Llama) -> list[torch.nn.Linear]:
    return [m for name, m in model.named_modules() if name.endswith("_proj")]


@pytest.fixture
def empty_registry(monkeypatch) -> dict:
    registry: dict = {}
    monkeypatch.setattr(format_registry, "FORMATS", registry)
    return registry


def test_defining_a_named_format_class_registers_it_in_order(empty_registry):
    class First(LabFormat):
        name = "first"

        def bits_per_weight(self) -> float:
            return 1.0

    class Second(First):
        name = "second"

    assert empty_registry == {"first": First, "second": Second}


def test_a_family_base_without_its_own_name_is_not_registered(empty_registry):
    class Family(LabFormat):
        def bits_per_weight(self) -> float:
            return 1.0

    class Member(Family):
        name = "member"

    class Unnamed(Member):
        pass

    assert empty_registry == {"member": Member}


def test_a_second_format_of_the_same_name_is_refused(empty_registry):
    class Once(LabFormat):
        name = "once"

    with pytest.raises(ValueError, match="'once'"):
        class Twice(LabFormat):
            name = "once"


@pytest.mark.parametrize("name", FORMATS)
def test_each_formats_bits_per_weight_over_smollm2s_linears(name):
    with torch.device("meta"):  # the shapes only: no memory, no values
        linears = block_linears(Llama(LlamaConfig()))
    assert f"{FORMATS[name](reference_context(), linears).bits_per_weight():.3f}" == BITS[name]


@pytest.mark.parametrize("name", [name for name in FORMATS if name != format_registry.BF16.name])
def test_each_format_quantizes_the_model_in_place_with_the_targets_code(name):
    model, ids = tiny_llama(), torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids)
        FORMATS[name](reference_context(), block_linears(model)).quantize(model)
        after = model(ids)
    assert torch.isfinite(after).all() and not torch.equal(after, before), f"{name} left the model as it was"


def test_the_bf16_row_leaves_the_model_to_the_cast_every_row_gets():
    model, ids = tiny_llama(), torch.zeros(1, 4, dtype=torch.long)
    with torch.no_grad():
        before = model(ids)
        format_registry.BF16(reference_context(), block_linears(model)).quantize(model)
        assert torch.equal(model(ids), before)


def test_a_format_becomes_the_targets_own_5_8_format():
    fmt = format_registry.NF4(reference_context(), block_linears(tiny_llama())).target_format()
    assert type(fmt) is target.exercise_module("reference", "ex5_8_compare_formats").Format
    assert (fmt.name, fmt.bits_per_weight, fmt.no_speed) == ("NF4 g64", 4.25, format_registry.NO_FUSED_KERNEL)


@pytest.mark.parametrize(("switch", "quality"), [("avx2", torch.float32), ("", None)])
def test_quality_runs_in_this_cpus_float_dtype_and_bf16_in_its_own(monkeypatch, switch, quality):
    """Issue 37: where bf16 matmuls would be emulated (57× slower) the quantized rows' quality runs in float32."""
    from kata import cpu

    monkeypatch.setenv(cpu.ENV_VAR, switch)
    linears = block_linears(tiny_llama())
    expected = quality or cpu.paths().float_dtype
    assert format_registry.W4A16RTN(reference_context(), linears).target_format().dtype == expected
    assert format_registry.BF16(reference_context(), linears).target_format().dtype == torch.bfloat16


@pytest.mark.parametrize("slow", [True, False])
def test_w8a8_takes_the_exact_emulation_only_where_int_mm_is_slow(monkeypatch, slow):
    """Where kata.cpu says torch._int_mm is slow, W8A8's products run 5.7's exact emulation (same integers); the
    module is as it was afterwards."""
    from kata import cpu

    ctx = reference_context()
    smoothquant = ctx.module("ex5_7_smoothquant")
    runs = smoothquant.int_mm_runs
    layer = smoothquant.W8A8Linear.from_linear(torch.nn.Linear(64, 32), "token")
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(2))
    expected = layer(x)
    calls = []
    monkeypatch.setattr(cpu, "has_fast_int8", lambda: not slow)
    monkeypatch.setattr(torch, "_int_mm", lambda a, b, real=torch._int_mm: calls.append(1) or real(a, b))
    with format_registry.int8_products_for_this_cpu(ctx):
        assert torch.equal(layer(x), expected)
    assert bool(calls) is not slow, f"torch._int_mm called {len(calls)} times where it is {'slow' if slow else 'fast'}"
    assert smoothquant.int_mm_runs is runs
