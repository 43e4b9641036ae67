"""nox sessions for quant-kata. `nox -l` lists them; plain `nox` runs the learner's self-check.

Sessions run in the interpreter nox runs under (venv_backend "none"): install once with
`pip install -e .` and no session reinstalls torch. 所有会话共用当前 Python 环境，不会重复安装 torch。
"""

import importlib.util

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["check"]


@nox.session
def check(session: nox.Session) -> None:
    """学员自测 / Learner self-check: your exercises/ with a progress table and a hint."""
    session.run("python", "-m", "pytest", "exercises", *session.posargs)


@nox.session
def reference(session: nox.Session) -> None:
    """讲师检查 / Instructor check: every exercise test against reference/, plus the kata's own tests/ — with
    pytest-xdist, one worker per core, a test file per worker at a time, torch on one thread each; the 10 slowest
    tests listed at the end."""
    workers = ["-n", "auto", "--dist", "loadfile"] if importlib.util.find_spec("xdist") else []
    session.run("python", "-m", "pytest", "exercises", "tests", "--target", "reference", "--slow", *workers,
                "--durations=10", *session.posargs, env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


@nox.session
def unsolved(session: nox.Session) -> None:
    """证明每个评分测试在原始存根上都失败 / Prove every graded test fails on the untouched stubs."""
    session.run("python", "-m", "kata.grade", "--unsolved", *session.posargs)


@nox.session
def grade(session: nox.Session) -> None:
    """评分 / Grade exercises/: results.json (exercism v3), junit.xml, summary.md in grade-results/."""
    session.run("python", "-m", "kata.grade", "--target", "exercises", "--out", "grade-results", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """GPU 速度基准 / GPU speed benchmarks of the target's code (reference; `-- --target exercises` for yours):
    pytest-benchmark JSON and per-table JSON in bench-results/; skips without CUDA."""
    import torch

    if not torch.cuda.is_available():
        session.skip("没有找到 CUDA 设备，GPU 基准需要一块 GPU / no CUDA device found: the GPU benchmarks need one")
    target = [] if any(arg.startswith("--target") for arg in session.posargs) else ["--target", "reference"]
    session.run("python", "-m", "pytest", "tests/test_peers.py", "tests/test_gpu_paths.py", "tests/benchmarks",
                *target, "-m", "gpu", "-s",
                "--benchmark-json=bench-results/benchmarks.json", "-p", "no:randomly", *session.posargs,
                success_codes=[0, 5])


@nox.session
def mutation(session: nox.Session) -> None:
    """变异测试 / Mutation testing: mutmut mutates reference/ one change at a time and runs each exercise's fast
    tests against every mutant; prints the score per exercise (goal ≥ 90 %), `-- --survivors` lists the rest.
    About 5 minutes on 2 cores; needs `pip install -e ".[mutation]"`."""
    if importlib.util.find_spec("mutmut") is None:
        session.error("没有安装 mutmut / mutmut is not installed: pip install -e \".[mutation]\"")
    # One thread: mutmut forks its workers, and a fork of a process whose OpenMP pool is running can hang.
    session.run("mutmut", "run", env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    session.run("python", "-m", "kata.grade.mutation_score", *session.posargs)


@nox.session
def lab(session: nox.Session) -> None:
    """主实验 / The lab: the chapter's tables, measured; prints them and writes lab-report.md."""
    session.run("python", "-m", "kata.lab", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff 检查 / ruff lint."""
    if importlib.util.find_spec("ruff") is None:
        session.error("没有安装 ruff / ruff is not installed: pip install -e \".[dev]\"")
    session.run("python", "-m", "ruff", "check", ".")
