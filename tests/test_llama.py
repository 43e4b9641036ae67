"""The support model: a KV-cached decode gives the logits of the full forward. 支撑代码：KV 缓存解码。"""

import itertools
import types

import torch
from hypothesis import given
from hypothesis import strategies as st

from kata import decode
from kata.decode import decode_speed, generate
from kata.harness.check import expect_equal, expect_tensor_close
from kata.llama import KVCache, tiny_llama

MODEL = tiny_llama()


@given(chunks=st.lists(st.integers(1, 5), min_size=1, max_size=6), batch=st.integers(1, 3), seed=st.integers(0, 99))
def test_decoding_with_a_kv_cache_gives_the_full_forwards_logits(chunks, batch, seed):
    """Any split of the text: a prefill, masked chunks of several tokens, single tokens, in any order."""
    ids = torch.randint(0, MODEL.cfg.vocab_size, (batch, sum(chunks)), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = MODEL(ids)
        cache = KVCache(MODEL.cfg, batch=batch, max_len=sum(chunks))
        ends = list(itertools.accumulate(chunks))
        steps = [MODEL(ids[:, end - size:end], cache) for size, end in zip(chunks, ends, strict=True)]
    expect_tensor_close(torch.cat(steps, dim=1), full, f"cached logits for chunks {chunks}", atol=1e-5, rtol=1e-5)
    expect_equal(cache.length, sum(chunks), "cache.length")


def test_a_full_cache_refuses_more_tokens():
    model = tiny_llama()
    cache = KVCache(model.cfg, batch=1, max_len=4)
    with torch.no_grad():
        model(torch.zeros(1, 4, dtype=torch.long), cache)
        try:
            model(torch.zeros(1, 1, dtype=torch.long), cache)
        except ValueError as err:
            assert "max_len" in str(err)
        else:
            raise AssertionError("a fifth token in a 4-token cache should raise ValueError")


def test_greedy_generation_matches_argmax_of_the_full_forward():
    model = tiny_llama()
    prompt = torch.randint(0, model.cfg.vocab_size, (1, 6), generator=torch.Generator().manual_seed(1))
    new, _, _ = generate(model, prompt, new_tokens=4)
    ids = prompt
    with torch.no_grad():
        for _ in range(4):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    expect_equal(new.tolist(), ids[:, 6:].tolist(), "generated ids")


def test_decode_speed_counts_every_decoded_token_of_the_batch(monkeypatch):
    ticks = itertools.count()  # a clock one second later at every reading: prefill 1 s, decode 1 s, every run
    monkeypatch.setattr(decode, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    speed = decode_speed(tiny_llama(), torch.zeros(2, 4, dtype=torch.long), new_tokens=3, runs=2)
    # 2 sequences × 2 tokens after the prefill's first one, in the 1 s of the decode
    expect_equal((speed["tokens_per_s"], speed["prefill_s"]), (4.0, 1.0), "tokens/s and prefill seconds")


def test_decode_speed_reports_its_batch_runs_and_threads():
    speed = decode_speed(tiny_llama(), torch.zeros(2, 4, dtype=torch.long), new_tokens=3, runs=2)
    expect_equal((speed["batch"], speed["runs"], speed["threads"]), (2, 2, torch.get_num_threads()), "speed info")


def test_perplexity_from_stored_log_probs_equals_evaluate():
    from kata.evaluate import evaluate, log_probs, perplexity

    model = tiny_llama()
    ids = torch.randint(0, model.cfg.vocab_size, (3, 12), generator=torch.Generator().manual_seed(2))
    expect_equal(perplexity(ids, log_probs(model, ids)), evaluate(model, ids)["ppl"], "perplexity")
