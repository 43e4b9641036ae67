"""What the GPU benchmarks share: where results go, the machine beside every number, the committed run's floors.

基准共用：结果目录、每个数字旁记下的机器信息、以已提交结果为准的下限（减去写明的噪声余量）。
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

import torch

from kata.timing import gpu_paths
from tests.benchmarks.peers import versions

OUT = Path(os.environ.get("KATA_BENCH_DIR", "bench-results"))  # docs/results for the committed run
COMMITTED = Path("docs/results")
QUICK = os.environ.get("KATA_BENCH_QUICK") == "1"  # M = 1 and no torch.compile: the notebook's quick pass
# A floor sits this far under the committed run's ratio on the same card: the noise margin. The same launches timed
# on two H100 machines (2026-12-05) differed by at most 2.3 % (device time); the margin leaves room for clocks,
# drivers and the launch search picking a neighbour.
NOISE = {"kernel": 0.15, "decode": 0.10}


def machine() -> dict:
    """Card, driver, torch, Triton, GemLite, date and the GPU paths' choices, recorded beside every number."""
    import triton

    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, check=False).stdout.strip() or "?"
    return {"device": torch.cuda.get_device_name(), "driver": driver, "torch": torch.__version__,
            "triton": triton.__version__, **versions(), "date": datetime.date.today().isoformat(),
            "paths": gpu_paths().why}


def committed_floors(name: str, keys: tuple[str, ...], device: str, kind: str) -> dict[str, float]:
    """key → (1 − NOISE[kind]) × the committed run's ratio for that key in docs/results/name, where that run was
    on this same card; read before a new run replaces the file."""
    path = COMMITTED / name
    if not path.is_file():
        return {}
    info = json.loads(path.read_text(encoding="utf-8"))
    if info["device"] != device:
        return {}
    return {key: (1 - NOISE[kind]) * info["ratios"][key] for key in keys if key in info.get("ratios", {})}


def write(name: str, info: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return path
