"""README's GPU tables, generated from the benchmark's JSON in docs/results/ (never typed by hand).

GPU 结果表：由 docs/results/ 里基准写下的 JSON 生成，README 的 GPU 部分（两个标记之间）和实验报告里的 GPU 一行
都从这里来；tests/test_gpu_report.py 检查 README 与生成的内容一致。
    python -m kata.lab.gpu_report                     # print the block
    python -m kata.lab.gpu_report --readme README.md  # rewrite it between <!-- gpu:start --> and <!-- gpu:end -->,
                                                      # and the GPU note of the lab block
Each table names its card, driver, torch, Triton, GemLite and date, as the JSON records them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from kata.lab.formats import gpu_note
from kata.report import markdown_table

RESULTS = Path("docs/results")
START, END = "<!-- gpu:start -->", "<!-- gpu:end -->"
W4, W8 = "W4 g64 target kernel (5.10)", "W8 per-channel target kernel (5.10)"
PEERS = ("W4 g64 tinygemm", "W4 g64 GemLite")
LAB_NOTE = re.compile(r"\n\nGPU(, one 8192 × 8192 layer|: 没有基准结果).*?(?=\n\n### |\n<!-- lab-report:end -->)", re.S)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def machine_line(info: dict) -> str:
    """Card, driver, torch, Triton, GemLite and date of one run."""
    gemlite = info.get("gemlite") or "absent"
    return (f"{info['device']}, driver {info['driver']}, torch {info['torch']}, Triton {info['triton']}, "
            f"GemLite {gemlite}, {info['date']}")


def _times(r: dict, base: float | None, copy: float | None = None) -> str:
    """One format's cell: device µs, its speed against the base and, at M = 1, its share of the copy bandwidth."""
    if r is None:
        return "—"
    cell = f"{r['device_us']:.1f} ({base / r['device_us']:.2f}×)"
    if copy:
        cell += f", {r['weight_bytes'] / (r['device_us'] * 1e-6) / copy:.0%} of copy"
    return cell


def kernel_table(paths: list[Path]) -> str:
    """One row per (shape, M): device µs of fp16, the 5.10 kernels and the peers, × against fp16 in that run."""
    rows = []
    for info in sorted((_load(p) for p in paths), key=lambda i: (i["M"], i["K"] * i["N"], i["shape"])):
        r = info["results"]
        fp16 = r["fp16 F.linear"]["device_us"]
        copy = info["copy_bandwidth"] if info["M"] == 1 else None
        rows.append((info["shape"], str(info["M"]), f"{fp16:.1f}", _times(r.get(W4), fp16, copy),
                     *(_times(r.get(p), fp16) for p in PEERS), _times(r.get(W8), fp16, copy),
                     (r.get(W4) or {}).get("launch") or "—"))
    info = _load(paths[0])
    header = (f"**One layer, device µs (CUDA graph, L2 flushed; × = against fp16 in the same run)** — "
              f"{machine_line(info)}; measured copy bandwidth {info['copy_bandwidth'] / 1e12:.2f} TB/s\n\n")
    return header + markdown_table(("shape", "M", "fp16 µs", "5.10 W4 g64", "tinygemm W4", "GemLite W4",
                                    "5.10 W8", "5.10 W4 launch (searched)"), rows)


def decode_table(path: Path) -> str:
    """Batch-1 decode of one model: tokens/s, × against the base row, share of the bytes limit."""
    info = _load(path)
    base = info["results"][f"{info['base']}, batch 1"]["tokens_per_s"]
    rows = [(name.removesuffix(", batch 1"), f"{r['tokens_per_s']:.0f}", f"{r['tokens_per_s'] / base:.2f}×",
             f"{r['tokens_per_s'] / r['bytes_limit_tokens_per_s']:.0%}",
             f"{r['bytes_limit_tokens_per_s']:.0f}") for name, r in info["results"].items()]
    header = (f"**Decode, {info['model']} shapes ({info['layers']} layers, random weights, lm_head {info['lm_head']},"
              f" batch 1, {info['prompt']}-token prompt, {info['new_tokens']} new tokens, median of "
              f"{info.get('runs', 3)})** — {machine_line(info)}\n\n")
    return header + markdown_table(("variant", "tokens/s", f"vs {info['base']}", "of bytes limit",
                                    "bytes limit tok/s"), rows)


def gpu_block(folder: Path = RESULTS) -> str:
    """The README block: decode tables first, then the per-layer table."""
    parts = [decode_table(p) for p in sorted(folder.glob("decode_*.json"), reverse=True)]
    kernels = sorted(folder.glob("kernel_*.json"))
    if kernels:
        parts.append(kernel_table(kernels))
    if not parts:
        return "没有 GPU 结果 / no GPU results yet: `KATA_BENCH_DIR=docs/results nox -s bench` on a CUDA machine."
    return "\n\n".join(parts)


def refreshed(text: str, folder: Path = RESULTS) -> str:
    """text with the block between the markers regenerated, and the lab block's GPU note too."""
    if START not in text or END not in text:
        raise ValueError(f"README 里没有 {START} … {END} / the README has no {START} … {END} markers")
    head, rest = text.split(START, 1)
    text = f"{head}{START}\n{gpu_block(folder)}\n{END}{rest.split(END, 1)[1]}"
    return LAB_NOTE.sub(lambda _: gpu_note((folder,)), text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.lab.gpu_report", description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite this README's GPU block in place")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the benchmark's JSON folder")
    args = parser.parse_args(argv)
    if args.readme is None:
        print(gpu_block(args.results))
        return 0
    args.readme.write_text(refreshed(args.readme.read_text(encoding="utf-8"), args.results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
