"""Wrong solutions must fail: each mutant is the reference with one classic mistake, graded like a learner's work.

错误的答案必须失败：每个“变异体”是参考答案加上一个典型错误，像学员的答案一样被测试。
"""

import os
import queue
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from kata.harness.target import ROOT
from tests.helpers import PytestForks, copy_kata

MUTANTS = [  # (module, text in the reference, wrong text, the mistake)
    ("ex1_1_weight_memory", "return num_params_b * bits_per_weight(dtype, group_size) / 8",
     "return num_params_b * bits_per_weight(dtype, group_size)", "bits not divided by 8"),
    ("ex1_1_weight_memory", "return BITS[dtype] + (scale_bits + zero_point_bits) / group_size",
     "return float(BITS[dtype])", "per-group scale overhead forgotten"),
    ("ex1_1_weight_memory", "bits_per_weight(dtype, group_size) / 8",
     "bits_per_weight(dtype, group_size) / 8 / 1.073741824", "GiB instead of GB"),
    ("ex1_1_weight_memory", '"int4": 4}', '"int4": 8}', "one INT4 weight per byte"),
    ("ex1_2_format_table", '"vs_fp16": gb / fp16', '"vs_fp16": fp16 / gb', "ratio upside down"),
    ("ex1_2_format_table", 'fp16 = memory_gb(num_params_b, "fp16")', 'fp16 = memory_gb(num_params_b, "fp32")',
     "ratio against fp32"),
    ("ex1_2_format_table", "{r['memory_gb']:.2f}", "{r['memory_gb']:.1f}", "memory rendered with one decimal"),
    ("ex1_2_format_table", "    if not formats:\n", "    if False:\n", "empty format list accepted"),
    ("ex2_1_per_tensor", "torch.round(x.float() / scale)", "torch.trunc(x.float() / scale)",
     "truncates instead of rounding"),
    ("ex2_1_per_tensor", "scale = (x.abs().max().float() / qmax)", "scale = (x.abs().mean().float() / qmax)",
     "scale from the mean magnitude"),
    ("ex2_1_per_tensor", "return q.float() * scale", "return q.float()", "dequantize forgets the scale"),
    ("ex2_2_quant_error", '"mse": err.pow(2).mean().item()', '"mse": err.pow(2).sum().item()', "MSE summed"),
    ("ex2_2_quant_error", '"max_abs": err.abs().max().item()', '"max_abs": err.max().item()',
     "max error without abs"),
    ("ex2_2_quant_error", "math.log10(signal / noise)", "math.log10(noise / signal)", "SQNR upside down"),
    ("ex3_1_savings_vs_error", '"memory_saving": 1 - bits / 16', '"memory_saving": 1 - bits / 32',
     "saving against fp32"),
    ("ex3_1_savings_vs_error", '"memory_saving": 1 - bits / 16', '"memory_saving": bits / 16',
     "saving as the fraction kept"),
    ("ex3_1_savings_vs_error", 'candidates = [("fp16", 16, x.to(torch.float16).to(x.dtype))]', "candidates = []",
     "no fp16 baseline row"),
    ("ex3_2_conservative", "sorted(b for b in sqnr_db if b > target_bits)",
     "sorted((b for b in sqnr_db if b > target_bits), reverse=True)", "falls back to the widest format first"),
    ("ex3_2_conservative", "    if memory_bound:\n", "    if False:\n", "memory bound ignored"),
    ("ex3_2_conservative", "range(target_bits, 9)", "range(target_bits, target_bits + 1)",
     "plan measures only the target width"),
    ("ex4_1_self_check", '"fp16_over": fp16 / memory_gb(num_params_b, fmt)',
     '"fp16_over": memory_gb(num_params_b, fmt) / fp16', "fp16 ratio upside down"),
    ("ex4_1_self_check", "rms = x.double().pow(2).mean().sqrt().item()", "rms = x.double().abs().mean().item()",
     "crest factor over mean |x|, not RMS"),
    ("ex4_1_self_check", '"activation_harder": a_sqnr < w_sqnr', '"activation_harder": a_sqnr > w_sqnr',
     "harder side reversed"),
    ("ex4_1_self_check", "min(passing) if passing", "max(passing) if passing", "PTQ floor at the widest width"),
    ("ex5_2_int4_packing", "return torch.where(nibbles >= 8, nibbles.to(torch.int16) - 16, nibbles.to(torch.int16))"
     ".to(torch.int8)", "return nibbles.to(torch.int8)", "sign not restored when unpacking"),
    ("ex5_2_int4_packing", "+ scale4.to(torch.float16).nbytes\n        + zero4.to(torch.uint8).nbytes",
     "+ 0", "INT4 bytes without scales and zero points"),
    ("ex5_2_int4_packing", "zero = (8 - zero_point.float()) * scale", "zero = -zero_point.float() * scale",
     "torch's INT4 zero without its offset of 8"),
    ("ex5_4_calibration", "return (2 / x.shape[0]) * (x.T @ x)", "return (1 / x.shape[0]) * (x.T @ x)",
     "Hessian without its factor 2"),
    ("ex5_4_calibration", '"mean_abs": x.abs().mean(0)', '"mean_abs": x.abs().mean(1)',
     "channel statistics over tokens' axis"),
    ("ex5_4_calibration", "            handle.remove()", "            pass", "hooks left behind"),
    ("ex2_1_per_tensor", "qmax = 2 ** (num_bits - 1) - 1", "qmax = 2 ** (num_bits - 1)", "off-by-one qmax"),
    ("ex2_2_quant_error", "10 * math.log10(signal / noise)", "20 * math.log10(signal / noise)",
     "SQNR in amplitude dB"),
    ("ex3_2_conservative", "if sqnr_db[target_bits] >= min_sqnr_db:\n        return f\"int{target_bits}\"\n"
     "    if memory_bound:\n        return f\"qat-int{target_bits}\"",
     "if memory_bound:\n        return f\"qat-int{target_bits}\"\n"
     "    if sqnr_db[target_bits] >= min_sqnr_db:\n        return f\"int{target_bits}\"", "rules out of order"),
    ("ex5_1_granularity", "q = q.clamp(qmin, qmax).reshape(w.shape)", "q = q.reshape(w.shape)", "missing clamp"),
    ("ex5_1_granularity", "zero_point = torch.round(-lo / scale)", "zero_point = torch.round(lo / scale)",
     "wrong zero point sign"),
    ("ex5_1_granularity", "lo = (groups.amin(dim=-1) * clip_ratio).clamp(max=0)",
     "lo = groups.amin(dim=-1) * clip_ratio", "asymmetric range without 0 below"),
    ("ex5_1_granularity", "lo = (groups.amin(dim=-1) * clip_ratio).clamp(max=0)\n"
     "    hi = (groups.amax(dim=-1) * clip_ratio).clamp(min=0)",
     "lo = groups.amin(dim=-1) * clip_ratio\n    hi = groups.amax(dim=-1) * clip_ratio",
     "asymmetric range without 0 on either side"),
    ("ex5_1_granularity", "best_err = torch.where(better, err, best_err)",
     "best_err = torch.where(best_err.isinf(), err, best_err)", "clip search keeps the last c that beats c = 1"),
    ("ex5_2_int4_packing", "nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)",
     "(nibbles[..., 0::2] << 4) | nibbles[..., 1::2]", "nibbles swapped"),
    ("ex5_3_quant_linear", "scale = scale.half().float()", "scale = scale.float()",
     "codes from the float32 scale, not the stored fp16 one"),
    ("ex5_3_quant_linear", "zero = (8 - self.zero_point.float()) * scale", "zero = -self.zero_point.float() * scale",
     "fused INT4 zero without torch's offset of 8"),
    ("ex5_3_quant_linear", "scales_and_zeros = torch.stack((scale, zero), dim=-1).transpose(0, 1).contiguous()",
     "scales_and_zeros = torch.stack((scale, zero), dim=-1).transpose(0, 1)", "fused INT4 scales not contiguous"),
    ("ex5_3_quant_linear", "        if self._cpu_operands is None:\n", "        if True:\n", "repacks on every call"),
    ("ex5_4_calibration", "self.H *= self.count / (self.count + m)", "pass", "streaming without rescaling"),
    ("ex5_5_awq", "D = rtn(w.float() * s, num_bits, group_size, symmetric=symmetric) / s - w.float()",
     "D = rtn(w.float() * s, num_bits, group_size, symmetric=symmetric) - w.float()", "scale not divided back out"),
    ("ex5_5_awq", "for w in weights:", "for w in weights[:1]:", "scale search scores only the first linear"),
    ("ex5_5_awq", "fold_scales(previous, layers, s)", "fold_scales(previous, layers, 1 / s)",
     "model flow folds the inverse scales"),
    ("ex5_6_gptq", "W1[i:] -= Hinv1[i, i:][:, None] * err[None, :]", "pass", "no error feedback"),
    ("ex5_6_gptq", "perm = torch.argsort(H.diagonal(), descending=True) if act_order else torch.arange(K)",
     "perm = torch.arange(K)", "act_order ignored"),
    ("ex5_6_gptq", "H = (2 / X.shape[0]) * gram(X)", "H = torch.eye(X.shape[1])",
     "model flow ignores the calibration inputs"),
    ("ex5_7_smoothquant", "scale = absmax.float().clamp(min=1e-8) / 127",
     "scale = absmax.float().clamp(min=1e-8) / 128", "activation scale off by one level"),
    ("ex5_7_smoothquant", "absmax = x.abs().amax(-1, keepdim=True) if", "absmax = x.abs().amax(0, keepdim=True) if",
     "per-channel instead of per-token activation scales"),
    ("ex5_7_smoothquant", ".pow(alpha) / weight_absmax.float().clamp(min=1e-5).pow(1 - alpha)",
     ".pow(alpha) * weight_absmax.float().clamp(min=1e-5).pow(1 - alpha)", "weight maximum multiplied, not divided"),
    ("ex5_7_smoothquant", "        for layer in following:\n            layer.weight.mul_(s)", "        pass",
     "smoothing folded into the norm only"),
    ("ex5_7_smoothquant", "got = W8A8Linear.from_weight(w * s, granularity=granularity)(x / s)",
     "got = W8A8Linear.from_weight(w * s, granularity=granularity)(x)", "α search forgets to divide x by s"),
    ("ex5_9_qat", "s = scale_gradient(step, 1 / math.sqrt(group_size * qmax))[..., None]", "s = step[..., None]",
     "LSQ without its gradient scale"),
    ("ex5_9_qat", "    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:\n        return grad",
     "    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:\n        return torch.zeros_like(grad)",
     "round's true gradient (zero) instead of the STE"),
    ("ex5_9_qat", "(teacher.exp() * (teacher - student))", "(student.exp() * (student - teacher))",
     "distillation KL the wrong way round"),
    ("ex5_12_gguf_formats", "return (runs[:, :, 0] | (runs[:, :, 1] << 4)).reshape(codes.shape[0], -1)",
     "return (runs[:, :, 1] | (runs[:, :, 0] << 4)).reshape(codes.shape[0], -1)", "nibbles in the wrong order"),
    ("ex5_12_gguf_formats", "extreme = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True))",
     "extreme = blocks.amax(-1, keepdim=True)", "Q4_0's scale from the max instead of the value of largest |x|"),
    ("ex5_12_gguf_formats", "torch.floor(torch.log2(amax)) - 2 + 127", "torch.ceil(torch.log2(amax)) - 2 + 127",
     "E8M0 exponent rounded up instead of down"),
    ("ex5_12_gguf_formats", "q = torch.trunc(blocks * _inverse(d) + 8.5).clamp(0, 15)",
     "q = torch.trunc(blocks * _inverse(d) + 0.5).clamp(0, 15)", "Q4_0 codes without the offset of 8"),
    ("ex5_12_gguf_formats", "q = round_half_away(blocks * _inverse(d)).to(torch.int8)",
     "q = torch.round(blocks / d).to(torch.int8)", "Q8_0 rounds halves to even and divides by d"),
    ("ex5_10_int4_kernel", "acc += s * (part - z * x_sum)", "acc += s * part", "GEMV forgets the zero point"),
    ("ex5_10_int4_kernel", "x_k * _one_plus_code_over_16(word, i)", "x_k * _one_plus_code_over_16(word, 7 - i)",
     "GEMV reads the nibbles high to low"),
    ("ex5_10_int4_kernel", "z = z + 1024.0", "z = z", "tl.dot path keeps the 0x6400 trick's 1024"),
    ("ex5_10_int4_kernel", "            tl.store(sums_ptrs, tl.zeros_like(acc), mask=mask)\n", "",
     "split-K leaves its sums behind for the next call"),
    ("ex5_10_int4_kernel", "nibbles = codes.t().reshape(k // 8, 8, n)",
     "nibbles = codes.t().reshape(8, k // 8, n).transpose(0, 1)", "a word holds every (K/8)-th code, not 8 in a row"),
    ("ex5_8_compare_formats", "torch.zeros(1, dtype=torch.float64), positive", "positive",
     "NF4 codebook without its zero"),
    ("ex5_8_compare_formats", "scale = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / E4M3_MAX",
     "scale = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127", "FP8 scaled as if int8"),
    ("ex5_8_compare_formats", "result = evaluate(model, ids, baseline)",
     "result = evaluate(model, ids, log_probs(model, ids))", "KL measured against the format's own model"),
    ("ex5_11_sensitivity", "metadata = 2 + (num_bits < 8)", "metadata = 2", "zero points left out of the bytes"),
    ("ex5_11_sensitivity", "            for name, weight in zip(names, saved, strict=True):\n"
     "                model.get_submodule(name).weight.copy_(weight)\n", "", "weights not restored after each group"),
    ("ex5_11_sensitivity", "(best is None or drop / extra > best[0]):\n"
     "                    best = (drop / extra, name, up)",
     "(best is None or drop > best[0]):\n                    best = (drop, name, up)",
     "upgrades ranked by KL drop, not by KL drop per byte"),
    ("ex5_11_sensitivity", "symmetric=num_bits == 8", "symmetric=False", "8 bits quantized asymmetrically"),
    ("ex5_11_sensitivity", "if ptq_kl <= max_kl:", "if ptq_kl < max_kl:", "a KL on the bar counted as a miss"),
]


def _run_mutant(sandboxes: queue.Queue, module: str, right: str, wrong: str):
    """The exercise's fast tests on the reference with `right` replaced by `wrong`, in a free sandbox."""
    source = (ROOT / "reference" / f"{module}.py").read_text(encoding="utf-8")
    if source.count(right) != 1:
        return None  # the test says the anchor moved
    sandbox, forks = sandboxes.get()
    try:
        (sandbox / "exercises" / f"{module}.py").write_text(source.replace(right, wrong), encoding="utf-8")
        return forks.run(sandbox, f"exercises/test_{module}.py", "-m", "not slow", "-q", "-x")
    finally:
        shutil.copy(ROOT / "exercises" / f"{module}.py", sandbox / "exercises" / f"{module}.py")
        sandboxes.put((sandbox, forks))


@pytest.fixture(scope="module")
def verdicts(request, tmp_path_factory) -> dict:
    """mistake → the finished test run of every selected mutant. Each run is a fresh fork of a process that imported
    torch and pytest once (a plain pytest subprocess spent most of its ~8 s importing); one copy of the kata per
    core runs them side by side."""
    selected = [item.callspec.params for item in request.session.items
                if item.originalname == "test_a_classic_mistake_fails_its_exercise"]
    workers = max(1, min(os.cpu_count() or 1, len(selected)))
    sandboxes, servers = queue.Queue(), []
    for i in range(workers):
        servers.append(PytestForks(tmp_path_factory.mktemp(f"runs{i}"), max(1, (os.cpu_count() or 1) // workers)))
        sandboxes.put((copy_kata(tmp_path_factory.mktemp(f"mutants{i}")), servers[-1]))
    try:
        with ThreadPoolExecutor(workers) as pool:
            runs = {p["mistake"]: pool.submit(_run_mutant, sandboxes, p["module"], p["right"], p["wrong"])
                    for p in selected}
        return {mistake: run.result() for mistake, run in runs.items()}
    finally:
        for server in servers:
            server.close()


@pytest.mark.parametrize(("module", "right", "wrong", "mistake"), MUTANTS, ids=[m[3] for m in MUTANTS])
def test_a_classic_mistake_fails_its_exercise(verdicts, module, right, wrong, mistake):
    source = (ROOT / "reference" / f"{module}.py").read_text(encoding="utf-8")
    assert source.count(right) == 1, f"the mutant's anchor text moved in reference/{module}.py"
    proc = verdicts[mistake]
    assert proc.returncode == 1, f"{mistake}: the tests of {module} did not catch it\n{proc.stdout[-1500:]}"
