"""Hints per exercise, easiest first: (中文, English) pairs. The progress table shows the one a failing test is
about (kata/harness/curriculum.py keys them by test name); `python -m kata hint ex2_1` prints them all.

提示：每个练习若干条，由浅入深，中文在前。
"""

HINTS: dict[str, tuple[tuple[str, str], ...]] = {
    "ex1_1": (
        ("显存(GB) = 参数量(十亿) × 每个权重的比特数 / 8。fp16 是 16 比特，int4 是 4 比特。",
         "GB = billions of params × bits per weight / 8. fp16 is 16 bits, int4 is 4."),
        ("分组量化要把每组的 scale（和 zero point）摊到每个权重上：4 + 16/128 = 4.125 比特。",
         "Group scales add their bits spread over the group: 4 + 16/128 = 4.125 bits."),
        ("未知的 dtype 要抛出 ValueError，并列出所有合法取值。",
         "An unknown dtype raises ValueError listing the valid names."),
    ),
    "ex1_2": (
        ("对每个格式调用传入的 memory_gb(num_params_b, fmt)，再除以 fp16 的显存。",
         "Call the memory_gb(num_params_b, fmt) you are given for each format; divide by fp16's."),
        ("渲染成 Markdown 表：表头、分隔行，然后每个格式一行，数字保留两位小数。",
         "Render a Markdown table: header, separator, one row per format, two decimals."),
    ),
    "ex2_1": (
        ("qmax = 2**(num_bits-1) - 1；scale = max|x| / qmax，至少 1e-8。",
         "qmax = 2**(num_bits-1) - 1; scale = max|x| / qmax, at least 1e-8."),
        ("q = clamp(round(x / scale), -qmax-1, qmax)，存成 torch.int8；反量化是 q.float() * scale。",
         "q = clamp(round(x / scale), -qmax-1, qmax) as torch.int8; dequantize is q.float() * scale."),
        ("先检查输入：x 必须是浮点张量且有限，num_bits 在 2..8；可用 kata.validate 里的函数。",
         "Check inputs first: a finite floating tensor, num_bits in 2..8; kata.validate has helpers."),
    ),
    "ex2_2": (
        ("MSE = mean((x - x̂)²)，max_abs = max|x - x̂|。",
         "MSE = mean((x - x̂)²); max_abs = max|x - x̂|."),
        ("SQNR(dB) = 10·log10(Σx² / Σ(x - x̂)²)；误差为 0 时是 +inf。",
         "SQNR(dB) = 10·log10(Σx² / Σ(x - x̂)²); +inf when the error is zero."),
    ),
    "ex3_1": (
        ("节省比例 = 1 - bits / 16（相对 fp16）。fp16 这一行的误差来自 x.half().float() 的往返。",
         "Saving = 1 - bits / 16 (against fp16). The fp16 row's error is x.half().float()'s round trip."),
        ("整数行用传入的 quantize / dequantize 做往返，再算 MSE 和 SQNR。",
         "Integer rows round-trip through the quantize / dequantize you are given, then MSE and SQNR."),
    ),
    "ex3_2": (
        ("从 target_bits 开始：SQNR 达标就用 PTQ；显存卡死在 target_bits 就选 QAT。",
         "Start at target_bits: PTQ if its SQNR meets the bar; if memory pins you there, QAT."),
        ("否则往上找第一个达标的位宽；都不达标就保留 FP16。",
         "Otherwise take the lowest higher bit width that meets the bar; if none does, keep FP16."),
    ),
    "ex4_1": (
        ("问题 1：用传入的 memory_gb 算出各格式显存和相对 fp16 的倍数。",
         "Q1: compute each format's memory with the memory_gb you are given, and the ratio to fp16."),
        ("问题 2：峰均比 = max|x| / sqrt(mean(x²))；峰均比大，逐张量量化的 SQNR 就低。",
         "Q2: crest factor = max|x| / sqrt(mean(x²)); a high crest factor lowers per-tensor SQNR."),
        ("问题 3：每多 1 比特 SQNR 约增加 6.02 dB；用最小二乘求斜率，找最低达标位宽。",
         "Q3: each bit adds about 6.02 dB; fit the slope by least squares, find the lowest passing width."),
    ),
    "ex5_1": (
        ("先写一个 _groups(w) 把权重看成 (行, 组, 组长)：tensor → (1, 1, -1)，channel → (out, 1, in)，"
         "group → (out, in/g, g)。", "Write a helper viewing w as (rows, groups, group_len): tensor → "
         "(1, 1, -1), channel → (out, 1, in), group → (out, in/g, g)."),
        ("在最后一维上取 amax / amin，就得到形状 (行, 组) 的 scale；量化时用 scale[..., None] 广播。",
         "amax / amin over the last dim gives scale of shape (rows, groups); broadcast with scale[..., None]."),
        ("非对称：lo = min(c·min, 0)，hi = max(c·max, 0)，zero_point = round(-lo/scale)；码用 uint8。",
         "Asymmetric: lo = min(c·min, 0), hi = max(c·max, 0), zero_point = round(-lo/scale); uint8 codes."),
        ("MSE 截断搜索：对每个候选 c 做 fake_quantize，按 (行, 组) 记下误差最小的 c。",
         "MSE clip search: fake_quantize at each candidate c, keep the best c per (row, group)."),
    ),
    "ex5_2": (
        ("q.to(torch.uint8) & 0xF 得到 4 位补码；偶数位 | 奇数位 << 4。",
         "q.to(torch.uint8) & 0xF gives the 4-bit two's complement; even | odd << 4."),
        ("解包：packed & 0xF 与 packed >> 4 交错排列（torch.stack(..., dim=-1).flatten(-2)）；有符号时 ≥ 8 减 16。",
         "Unpack: interleave packed & 0xF and packed >> 4 (stack on a new last dim, flatten); signed: ≥ 8 → -16."),
        ("torch 的零点：(q - 8)·s + zero = (q - zp)·s ⇒ zero = (8 - zp)·s；再转置成 (组, out, 2)。",
         "torch's zero: (q - 8)·s + zero = (q - zp)·s ⇒ zero = (8 - zp)·s; transpose to (groups, out, 2)."),
    ),
    "ex5_3": (
        ("用 register_buffer 存码、scale、zero_point：它们会进 state_dict，却不是可训练参数。",
         "Store codes, scale and zero_point with register_buffer: in the state_dict, not trainable."),
        ("forward：反量化出 ŵ，转成 x.dtype，再 F.linear(x, ŵ, bias)。",
         "forward: dequantize ŵ, cast to x.dtype, then F.linear(x, ŵ, bias)."),
        ("替换子模块：名字 'layers.0.mlp.up_proj' 拆成父模块 'layers.0.mlp' 与属性 'up_proj'，用 setattr。",
         "Swap a submodule: split 'layers.0.mlp.up_proj' into parent 'layers.0.mlp' and 'up_proj'; setattr."),
        ("码与 scale 可直接用 kata.oracles.group_qparams / quantize_to_grid，不必先做完 5.1 与 5.2。",
         "kata.oracles.group_qparams / quantize_to_grid give codes and scales without your 5.1 and 5.2."),
        ("快速路径：把操作数存在 self._cpu_operands（__init__ 里设为 None），第一次用时才打包。",
         "Fast path: keep the operands in self._cpu_operands (None in __init__), packed on first use."),
    ),
    "ex5_4": (
        ("module.register_forward_pre_hook(fn)：fn(module, args) 里 args[0] 就是输入；记得 handle.remove()。",
         "module.register_forward_pre_hook(fn): args[0] in fn(module, args) is the input; remove the handle."),
        ("H = (2/N)·XᵀX：先 x.reshape(-1, d).double()，再 x.T @ x。",
         "H = (2/N)·XᵀX: x.reshape(-1, d).double(), then x.T @ x."),
        ("流式：先把旧 H 乘 n/(n+m)，再加 (2/(n+m))·XᵀX。",
         "Streaming: scale the old H by n/(n+m), then add (2/(n+m))·XᵀX."),
    ),
    "ex5_5": (
        ("α = 0 时 s 全为 1，就是普通 RTN：网格从 0 开始，保证 AWQ 不会比 RTN 差。",
         "At α = 0, s is all ones: plain RTN. Starting the grid at 0 keeps AWQ from doing worse than RTN."),
        ("量化的是 W·s，再除以 s：ŵ = Q(W·s)/s；输出误差是 x·(ŵ − W)ᵀ。",
         "Quantize W·s, divide by s: ŵ = Q(W·s)/s; the output error is x·(ŵ − W)ᵀ."),
        ("输出误差的均方等于 trace(D·C·Dᵀ)，C = XᵀX/N：先算一次 C，每个候选都很便宜。",
         "The mean square output error is trace(D·C·Dᵀ) with C = XᵀX/N: compute C once, candidates are cheap."),
        ("折叠：RMSNorm 的 weight 除以 s，后面 Linear 的 weight（列）乘以 s：浮点输出完全不变。",
         "Folding: divide the RMSNorm weight by s, multiply the next Linear's columns by s: same float output."),
        ("整模型：照 kata/sequential.py 开头的循环写；Q(·) 可直接用 kata.oracles.rtn，不必先做完 5.1。",
         "The model flow follows the loop in kata/sequential.py's docstring; Q(·) can be kata.oracles.rtn."),
    ),
    "ex5_6": (
        ("先写不分块（block_size=1）的版本：量化一列，err = (w − q)/U_qq，W[:, q:] −= err·U[q, q:]。",
         "Start without blocks: quantize a column, err = (w − q)/U_qq, W[:, q:] −= err·U[q, q:]."),
        ("U = cholesky(cholesky_inverse(cholesky(H + λI)), upper=True)；H 用 float64 更稳。",
         "U = cholesky(cholesky_inverse(cholesky(H + λI)), upper=True); float64 H is safer."),
        ("act_order：perm = argsort(diag H, descending)，W 与 H 都按 perm 重排，最后 ŵ[:, argsort(perm)]。",
         "act_order: perm = argsort(diag H, descending); permute W and H, finish with ŵ[:, argsort(perm)]."),
        ("分块后，块外的列还欠着本块的更新：拟合组参数时要把 Err[:, :i] @ U[i1:i1+i, cols] 减掉。",
         "With blocks, later columns still owe this block's update: subtract Err[:, :i] @ U[i1:i1+i, cols]."),
        ("整模型：照 kata/sequential.py 开头的循环写；组参数可用 kata.oracles.group_qparams，不必先做完 5.1。",
         "The model flow follows kata/sequential.py's loop; kata.oracles.group_qparams fits the group grid."),
    ),
    "ex5_7": (
        ("逐 token：scale = x.abs().amax(-1, keepdim=True) / 127；逐张量：x.abs().amax() / 127。",
         "Per token: scale = x.abs().amax(-1, keepdim=True) / 127; per tensor: x.abs().amax() / 127."),
        ("torch._int_mm(a, b.T) 返回 int32；模拟：对每个 k 块 "
         "out += (a[:, k:k+1024].float() @ b[:, k:k+1024].float().T).to(torch.int32)，逐位相同。",
         "torch._int_mm(a, b.T) gives int32; emulate: for each k chunk, out += (a[:, k:k+1024].float() @ "
         "b[:, k:k+1024].float().T).to(torch.int32), bit for bit."),
        ("W8A8 前向：y = int8_matmul(q_x, qweight).float() * scale_x * weight_scale，最后才回到浮点。",
         "W8A8 forward: y = int8_matmul(q_x, qweight).float() * scale_x * weight_scale: float only at the end."),
        ("α 搜索：共享输入的权重按行拼起来，max|W_j| 取所有行；先算一次 x @ Wᵀ 作为参照。",
         "α search: stack the weights sharing x; max|W_j| over all their rows; compute x @ Wᵀ once."),
        ("整模型：照 kata/sequential.py 的循环；平滑不改变浮点模型，最后再 swap_linears(model.layers)。",
         "Model flow: kata/sequential.py's loop; smoothing keeps the float model, swap_linears at the end."),
    ),
    "ex5_8": (
        ("NF4：normal = torch.distributions.Normal(0., 1.)；normal.icdf(torch.linspace(NF4_OFFSET, 0.5, 9)[:-1])。",
         "NF4: normal.icdf(torch.linspace(NF4_OFFSET, 0.5, 9)[:-1]) gives the 8 positive values."),
        ("最近的 codebook 值：(w_norm[..., None] - codebook).abs().argmin(-1)。",
         "Nearest codebook value: (w_norm[..., None] - codebook).abs().argmin(-1)."),
        ("FP8：(w / s).to(torch.float8_e4m3fn) 就是舍入到最近的 E4M3 值；s 让每行最大值落在 448。",
         "FP8: (w / s).to(torch.float8_e4m3fn) rounds to the nearest E4M3 value; s puts the row max at 448."),
        ("compare_formats：基线只算一次 log_probs；每个格式都从 load_model() 拿一份新的模型。",
         "compare_formats: the baseline's log_probs once; every format starts from a fresh load_model()."),
    ),
    "ex5_9": (
        ("RoundSTE：forward 返回 torch.round(x)，backward 原样返回 grad。",
         "RoundSTE: forward returns torch.round(x), backward returns grad unchanged."),
        ("lsq_fake_quantize：s = scale_gradient(step, 1/√(g·qmax))[..., None]；v = clamp(w/s)；ŵ = RoundSTE(v)·s。",
         "lsq_fake_quantize: s = scale_gradient(step, 1/√(g·qmax))[..., None]; v = clamp(w/s); ŵ = RoundSTE(v)·s."),
        ("clamp 的梯度在范围外为 0，所以 ∂ŵ/∂w 自动为 0，∂ŵ/∂s 自动是 qmin 或 qmax。",
         "clamp's gradient is 0 outside the range: ∂ŵ/∂w becomes 0 and ∂ŵ/∂s becomes qmin or qmax by itself."),
        ("qat_finetune：先把所有参数 requires_grad_(False)，再只打开 QATLinear 的；老师的 logits 用 no_grad。",
         "qat_finetune: freeze every parameter, then unfreeze the QATLinear ones; the teacher runs under no_grad."),
    ),
    "ex5_10": (
        ("prepare：codes.t().reshape(K // 8, 8, N)，第 i 个码左移 4·i 位再沿 dim=1 求和（int64），回绕成 int32；"
         "scale、zero_point 先 .half()（可能是 float32）。",
         "prepare: codes.t().reshape(K // 8, 8, N), shift code i by 4·i, sum over dim 1 in int64, wrap to int32; "
         ".half() the scale and zero point (they may come as float32)."),
        ("内核里每个字只读一次：words 形状 (BLOCK_K/8, BLOCK_N)；第 i 个码 = (words >> 4·i) & 0xF，它是第 8j + i 行。"
         "tl.dot 路径：(words[:, None, :] >> 4·arange(8)[None, :, None]) & 0xF 得 (BLOCK_K/8, 8, BLOCK_N)，"
         "tl.reshape 成 (BLOCK_K, BLOCK_N)，再做一个 BLOCK_K 深的 tl.dot（NVIDIA 要求内维 K ≥ 16）。",
         "Load each word once, (BLOCK_K/8, BLOCK_N); code i = (words >> 4·i) & 0xF is row 8j + i. For tl.dot, "
         "(words[:, None, :] >> 4·arange(8)[None, :, None]) & 0xF is (BLOCK_K/8, 8, BLOCK_N): tl.reshape it to "
         "(BLOCK_K, BLOCK_N) for one tl.dot of depth BLOCK_K (NVIDIA needs the inner size K ≥ 16)."),
        ("组号 = k0 // group_size；ŵ = (q − z)·s。GEMV 可以先在组内求 Σx·q 和 Σx，最后 s·(Σx·q − z·Σx)；"
         "tl.dot 的一个 K 块只在一组里，所以 tl.dot(x, q − z) 之后再乘 s。",
         "Group = k0 // group_size; ŵ = (q − z)·s. A GEMV can sum Σx·q and Σx inside a group, then "
         "s·(Σx·q − z·Σx); a tl.dot K block lies in one group, so multiply tl.dot(x, q − z) by s afterwards."),
        ("GEMV：每个线程管几个相邻输出，沿 K 在寄存器里累加；tl.dot 的 x 块至少 16 行（BLOCK_M ≥ 16），内维 "
         "BLOCK_K ≥ 16。M 小时程序太少填不满 GPU：split-K，各段用 tl.atomic_add 加进 float32 的缓冲区。",
         "GEMV: each thread owns a few neighbouring outputs and sums over K in registers; a tl.dot tile of x has "
         "at least 16 rows (BLOCK_M ≥ 16) and its inner size BLOCK_K is at least 16. At small M too few programs "
         "fill the GPU: split K and tl.atomic_add the parts into a float32 buffer."),
        ("更快（nox -s bench）：1 + q/16 = bits(q << 19 | 0x3F800000) 免去整数转浮点；"
         "fp16 里 q | 0x6400 = 1024 + q；"
         "最后到达的程序写 y 并把缓冲区清零，省掉清零和转换两个内核。",
         "Faster (nox -s bench): 1 + q/16 = bits(q << 19 | 0x3F800000) skips int-to-float; in fp16 q | 0x6400 = "
         "1024 + q; the last program to arrive writes y and re-zeroes the buffer: no zero-fill or cast kernels."),
    ),
    "ex5_11": (
        ("layer_bytes：码 -(-out·in·bits // 8) 字节（向上取整）+ out·(in // group)·(2 + (bits < 8)) 字节元数据。",
         "layer_bytes: codes -(-out·in·bits // 8) bytes (rounded up) + out·(in // group)·(2 + (bits < 8))."),
        ("sensitivity：先存下这组层的权重，quantize_layers，算 KL，再 copy_ 回去——下一组要从浮点模型开始。",
         "sensitivity: save the group's weights, quantize_layers, measure the KL, copy_ them back."),
        ("更快：第一个被改的层之前的块和浮点模型算得一样。先用 kata.sequential 的 run_block(…, dtype=None) "
         "把每块的浮点输入存下来，每组从它碰到的第一块开始跑，再 lm_head(norm(x))。",
         "Faster: blocks before the first changed layer compute what the float model computes: keep each "
         "block's float input (kata.sequential.run_block(…, dtype=None)) and start each run there."),
        ("KL = mean over positions of Σ p_ref·(log p_ref − log p)，和 kata.evaluate.evaluate 的定义一样。",
         "KL = mean over positions of Σ p_ref·(log p_ref − log p), as kata.evaluate.evaluate defines it."),
        ("plan_precision：每个层记住当前选项的下标；每轮在所有“层 × 更宽选项”里找 (KL 降幅 / 多花的字节) "
         "最大且放得进预算的那个。",
         "plan_precision: keep each layer's option index; each round take the (layer, wider option) with the "
         "largest KL drop per extra byte that still fits the budget."),
    ),
    "ex5_12": (
        ("先写 round_half_away 和半字节打包：32 个码的块里字节 j = 码 j | 码 j+16 << 4（NVFP4：j 与 j+8）。"
         "fp16 的字节：d.to(torch.float16).view(torch.uint8)。",
         "Start with round_half_away and the nibble packing: byte j = code j | code j+16 << 4 (NVFP4: j and "
         "j+8). fp16 bytes: d.to(torch.float16).view(torch.uint8)."),
        ("字节要和 gguf 一样，运算顺序也要一样：先用 float32 算 d 和 1/d，再算 x · (1/d)，不要写 x / d；"
         "Q4_0 的 d 用 |x| 最大的那个值本身（带符号）除以 −8。",
         "Same bytes need the same arithmetic: d and 1/d in float32, then x · (1/d), not x / d; Q4_0's d is the "
         "value of largest |x|, sign kept, divided by −8."),
        ("MXFP4：e = floor(log2(max|x|)) − 2 + 127；scale/2 = 2^(e − 128) 按 llama.cpp 的比特拼法；"
         "每个值在 16 个码里找 |scale/2 · E2M1_DOUBLED[c] − x| 最小的（argmin 取第一个）。",
         "MXFP4: e = floor(log2(max|x|)) − 2 + 127; scale/2 = 2^(e − 128) built from bits; each value takes "
         "the code with the least |scale/2 · E2M1_DOUBLED[c] − x| (argmin keeps the first)."),
        ("NVFP4：子块 scale 用 .to(torch.float8_e4m3fn) 舍入，.view(torch.uint8) 得字节；读回时先 & 0x7F，"
         "再 .view(torch.float8_e4m3fn)，0x7F 当 0。",
         "NVFP4: round sub-block scales with .to(torch.float8_e4m3fn), .view(torch.uint8) for the bytes; read "
         "back with & 0x7F, then .view(torch.float8_e4m3fn), 0x7F as 0."),
    ),
}
