"""实践 (b) — GPTQ：一层，以及逐块的整个模型 / GPTQ for a layer and, block by block, for a model.

Frantar et al. 2022, Algorithm 1. 一列一列地量化 W (out, in)；每量化一列，就把它的舍入误差分摊到还没量化的
列上，使层输出 X·Wᵀ 变化最小 / quantize W one column at a time and spread each column's rounding error over
the columns not yet quantized, so that X·Wᵀ moves as little as possible:
    err = (w_q − quant(w_q)) / U_qq,       W[:, q:] −= err · U[q, q:]
其中 U 是 (H + λI)⁻¹ 的上三角 Cholesky 因子，λ = damp · mean(diag H) / U is the upper Cholesky factor of
(H + λI)⁻¹:  U = cholesky(cholesky_inverse(cholesky(H + λI)), upper=True).
    1. 死列 / dead columns: diag(H) = 0 → 该列权重置 0，H_qq = 1 / zero the weights, set H_qq = 1.
    2. act_order: 按 diag(H) 从大到小的顺序量化各列（最后把列顺序还原）/ quantize columns by decreasing
       diag(H), and undo the permutation at the end.
    3. 分组 / groups: 组是原始列顺序中连续的 group_size 列；在某组的第一列被量化时，用“此刻”（已被前面误差
       更新过）的权重拟合该组的 scale / zero_point（min/max，同 5.1；kata.oracles.group_qparams(cols, num_bits,
       None, symmetric=...) 给出每行一组，也可用你自己的 5.1）。group_size=None：开始前每行拟合一次。
       Groups are contiguous in the original column order; fit a group's scale and zero point when its first
       column comes up, from the weights as error feedback left them.
    4. lazy blocks: 每 block_size 列为一块，块内逐列更新，块外的列每块只更新一次：
       W[:, i2:] −= Err_block · U[i1:i2, i2:]。结果应与 block_size=1 相同。
       Update inside a block column by column, the rest once per block; the result equals block_size=1.
返回量化网格上的 ŵ（float32，与 w 同形）/ returns ŵ on the grid, float32, w's shape.
坏输入 / bad input: H 不是 (in, in) → ValueError（写明 H）; group_size 不整除 in → ValueError
（kata.validate.check_group_size(group_size, in) 查它，None 表示整行 / checks it, None is the whole row）.

gptq_quantize_model: 逐块 / block by block — kata/sequential.py 开头有这个循环的例子（INPUT_GROUPS 列出共用
输入的层，linears(block, names) 取出它们，捕获默认在 bf16 autocast 下）/ its docstring shows the loop.
用前面已量化的块的输出作为本块输入，捕获各线性层输入，算 H = (2/N)·XᵀX（同一输入的 q/k/v、gate/up
共用一个 H；kata.sequential.gram(X) 算 XᵀX 更快），量化这一块的 7 个线性层（就地写回权重），再算本块量化后的
输出给下一块。lm_head 与嵌入层不动。
Feed each block the outputs of the blocks already quantized; H = (2/N)·XᵀX per shared input (gram(X) is a
faster XᵀX); quantize the block's 7 linears in place; pass its quantized output on.
Returns {"seconds": ..., "layers": ...}.

答案规则 / answer rules: python -m kata rules ex5_6
提示 / hints: python -m kata hint ex5_6
"""

from __future__ import annotations

import torch

from kata.llama import Llama


def gptq_quantize_layer(w: torch.Tensor, H: torch.Tensor, num_bits: int = 4, group_size: int | None = 64, *,
                        symmetric: bool = False, damp: float = 0.01, block_size: int = 128,
                        act_order: bool = False) -> torch.Tensor:
    """返回 / Returns ŵ (out, in) float32."""
    raise NotImplementedError("5.6: gptq_quantize_layer — 提示 / hint: python -m kata hint ex5_6")


def gptq_quantize_model(model: Llama, calib_ids: torch.Tensor, num_bits: int = 4, group_size: int | None = 64, *,
                        symmetric: bool = False, act_order: bool = True, damp: float = 0.01,
                        block_size: int = 128) -> dict[str, float]:
    """就地量化整个模型 / Quantize the model in place (see above)."""
    raise NotImplementedError("5.6: gptq_quantize_model — 提示 / hint: python -m kata hint ex5_6")
