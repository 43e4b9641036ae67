"""quant-kata support code shared by exercises/ and reference/ (no answers live here).

量化练习的公共支持代码：目标切换、进度与提示、评分、实验报告。这里没有练习的答案。
"""
