"""The real model's loader and forward: known numbers, and the optional Hugging Face path."""

import pytest
import torch

from kata.llama import Llama
from kata.smollm2 import _unpermute


def test_unpermute_restores_rotate_half_row_order():
    # llama.cpp stores each head's rows as (pair 0 a, pair 0 b, pair 1 a, …); rotate-half wants (all a, all b).
    heads, head_dim = 2, 4
    hf_rows = torch.arange(heads * head_dim, dtype=torch.float32)[:, None]  # HF order: 0..7
    gguf_rows = hf_rows.reshape(heads, 2, head_dim // 2, 1).transpose(1, 2).reshape(-1, 1)  # llama.cpp's permute
    assert torch.equal(_unpermute(gguf_rows, heads), hf_rows)


@pytest.mark.slow
def test_greedy_continuation_is_coherent(smollm2):
    from kata.smollm2 import load_tokenizer

    tokenizer = load_tokenizer()
    ids = torch.tensor([tokenizer.encode("The capital of France is").ids])
    with torch.no_grad():
        for _ in range(3):
            ids = torch.cat([ids, smollm2(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert tokenizer.decode(ids[0].tolist()).startswith("The capital of France is Paris")


@pytest.mark.slow
def test_perplexity_matches_the_scouting_figure(smollm2):
    # Scouting measured 39.3 on the first 4 windows of Persuasion. A wrong RoPE pairing or norm gives hundreds;
    # ±0.2 allows for float summation order across CPUs and torch versions.
    from kata.evaluate import eval_windows, evaluate

    assert abs(evaluate(smollm2, eval_windows(4))["ppl"] - 39.3) < 0.2


def test_a_local_hugging_face_checkpoint_loads_with_the_same_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    from kata.smollm2 import load_model

    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                      tie_word_embeddings=True)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    ids = torch.randint(0, 128, (2, 10))
    assert isinstance(ours, Llama)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=1e-4)
