"""Batch-1 decode speed on random weights of the real shapes: float, tinygemm and the target's 5.10 kernel.

逐 token 解码速度（batch 1，随机权重、真实形状）：浮点、tinygemm 和目标自己的 5.10 内核，同一次运行里对比。
"graph": kata's static step (kata.static_decode) replayed from one CUDA graph per token; "compiled graph": the
same step compiled by torch.compile first (norms, RoPE, cache writes, residual adds fused), then captured. The 5.10
rows decode through the deploy step, kata.static_decode.pack_projections: q/k/v and gate/up packed into one kernel
launch each, every quantized matmul a custom op that torch.compile keeps in one graph. Ratios against the float
compiled graph of the same run. Bytes limit = measured copy bandwidth / (every weight and buffer but the embedding
table + the whole K/V cache) per token. dtype from the device (bf16 where native, else fp16).
Floors: the W4 5.10 row reaches GENERIC_FLOOR[model] × the float compiled graph on any card, and on the committed
run's card (1 − NOISE) of the committed ratios (tests/benchmarks/common.py).
"""

from __future__ import annotations

import pytest
import torch

from kata.lab.gpu_report import decode_table
from kata.timing import gpu_paths
from tests.benchmarks.common import QUICK, committed_floors, machine, write
from tests.benchmarks.peers import GROUP, Tinygemm

pytestmark = pytest.mark.gpu
pytest.importorskip("triton", reason="5.10 的内核需要 Triton / 5.10's kernel needs Triton")

MODELS = {
    "Llama-3-8B": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32,
                       num_kv_heads=8, rope_theta=500000.0, tie_embeddings=False),
    "SmolLM2-135M": dict(),
}
GENERIC_FLOOR = {"SmolLM2-135M": 0.8, "Llama-3-8B": 1.5}  # W4 5.10 against the float compiled graph, any card
PROMPT, NEW, RUNS = 32, 64, 3
W4, W8 = "W4 g64 target kernel (5.10)", "W8 target kernel (5.10)"


def variants(float_name: str) -> tuple[str, ...]:
    """The rows of one model, the base (float compiled graph) among them; QUICK: graphs only, no compiling."""
    if QUICK:
        return f"{float_name} graph", f"{W4} graph"
    tinygemm = ("W4 g64 tinygemm compiled graph",) if gpu_paths().tinygemm else ()
    return (f"{float_name} eager", f"{float_name} graph", f"{float_name} compiled graph", *tinygemm,
            f"{W4} compiled graph", f"{W8} compiled graph")


def random_llama(cfg, dtype: torch.dtype):
    from kata.llama import Llama

    with torch.device("meta"):
        model = Llama(cfg)
    model = model.to_empty(device="cuda").to(dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.fill_(1.0)
            else:
                param.normal_(std=0.02)
    return model.eval()


def decode_model(cfg, variant: str, dtype: torch.dtype):
    """A random model of cfg's shapes, its block linears (lm_head stays float in every row) in the variant's
    format; the 5.10 rows deployed for speed (use_kernel, then pack_projections)."""
    from exercises.ex5_3_quant_linear import quantize_model
    from exercises.ex5_10_int4_kernel import prepare, quantized_matmul, use_kernel
    from kata.llama import replace_modules
    from kata.static_decode import pack_projections

    model = random_llama(cfg, dtype)
    if variant.startswith(("W4", "W8")):
        quantize_model(model, 4 if variant.startswith("W4") else 8, GROUP if variant.startswith("W4") else None)
        model.cuda()  # QuantLinear's buffers are made on the CPU
        if "tinygemm" in variant:
            replace_modules(model, lambda _, m: hasattr(m, "zero_point"), Tinygemm)  # every W4 QuantLinear
        else:
            use_kernel(model)
            pack_projections(model, prepare, quantized_matmul)
    return model


def bytes_per_step(model, cfg) -> int:
    """What one decode step must read: every parameter and buffer but the embedding table (one row is read), and
    the whole K/V cache (the static step attends over all of it). Packed 5.10 weights are attributes, as big as
    the 5.3 buffers they came from, which are counted instead."""
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    tensors.pop(id(model.embed_tokens.weight))
    cache = 2 * cfg.num_layers * cfg.num_kv_heads * (PROMPT + NEW) * cfg.head_dim * model.embed_tokens.weight.itemsize
    return sum(t.numel() * t.element_size() for t in tensors.values()) + cache


def fits(cfg, dtype: torch.dtype) -> bool:
    """The float model and a quantized copy fit this card's memory with room to spare."""
    params = cfg.num_layers * (4 * cfg.hidden_size**2 + 3 * cfg.hidden_size * cfg.intermediate_size)
    params += 2 * cfg.vocab_size * cfg.hidden_size
    return 1.5 * params * dtype.itemsize < torch.cuda.get_device_properties(0).total_memory


@pytest.mark.parametrize("name", list(MODELS))
def test_decode_tokens_per_second(benchmark, name, copy_limit):
    from kata.decode import decode_speed
    from kata.llama import LlamaConfig

    cfg, dtype = LlamaConfig(**MODELS[name]), gpu_paths().dtype
    if not fits(cfg, dtype):
        pytest.skip(f"显存不够 / not enough GPU memory for {name}'s shapes in {dtype}")
    float_name = "bf16" if dtype == torch.bfloat16 else "fp16"
    rows, results = variants(float_name), {}

    def measure():
        for variant in rows:
            model = decode_model(cfg, variant, dtype)
            prompt = torch.randint(0, cfg.vocab_size, (1, PROMPT), device="cuda")
            row = decode_speed(model, prompt, new_tokens=NEW, runs=RUNS, graphed=not variant.endswith("eager"),
                               compiled=variant.endswith("compiled graph"))
            limit = copy_limit / bytes_per_step(model, cfg)
            results[f"{variant}, batch 1"] = {**row, "bytes_limit_tokens_per_s": limit}
            print(f"{name} {variant}: {row['tokens_per_s']:.0f} tok/s ({row['tokens_per_s'] / limit:.0%} of the "
                  f"bytes limit)", flush=True)
            del model
            torch.cuda.empty_cache()

    benchmark.pedantic(measure, rounds=1, iterations=1)
    base = rows[1] if QUICK else f"{float_name} compiled graph"
    speed = {key.removesuffix(", batch 1"): r["tokens_per_s"] for key, r in results.items()}
    ratios = {key: value / speed[base] for key, value in speed.items()}
    info = {"model": name, "layers": cfg.num_layers, "prompt": PROMPT, "new_tokens": NEW, "runs": RUNS,
            "lm_head": float_name, **machine(), "copy_bandwidth": copy_limit, "base": base, "results": results,
            "ratios": ratios}
    file = f"decode_{name}.json"
    kernels = tuple(row for row in rows if row.startswith((W4, W8)))
    w4 = kernels[0]
    floors = info["floors"] = committed_floors(file, kernels, info["device"], "decode")
    benchmark.extra_info.update(info)
    print("\n" + decode_table(write(file, info)))
    if not QUICK:
        assert speed[f"{float_name} graph"] > speed[f"{float_name} eager"], "the graph is slower than eager"
        assert speed[base] > 0.95 * speed[f"{float_name} graph"], "compiling slowed the graph down"
        assert ratios[w4] >= GENERIC_FLOOR[name], f"{w4}: {ratios[w4]:.2f}× {base} (floor {GENERIC_FLOOR[name]}×)"
    for key, floor in floors.items():
        assert ratios[key] >= floor, f"{key}: {ratios[key]:.2f}× {base}; committed run − noise: {floor:.2f}×"
