"""Fetching a student's repository for grading: the commit to grade (a pinned ref, or the last at a deadline), its
time, and whether later commits came after the deadline.

取学员仓库：克隆（部分克隆，只取提交历史，文件按需取），选出要评的提交——名单上写了 ref 就用它，否则用截止时间之前的
最后一个提交——并记下提交时间、截止后还有没有提交（迟交）。私有仓库的令牌从环境变量读（KATA_GIT_TOKEN，或
GITHUB_TOKEN），只经 git 的环境配置传给 git，从不写进命令行、日志或沙箱。
A repository is cloned with `--filter=blob:none` (all commits, files fetched as needed: deep enough for any
deadline), then the commit to grade is checked out: the roster's ref if it gives one, else the last commit at or
before the deadline, else the branch's head. Commit times are the committer dates the student's git wrote, so they
can be set by the student; a ref pins a submission instead. A token for private repositories comes from
KATA_GIT_TOKEN (or GITHUB_TOKEN) and reaches git only as an environment-configured HTTP header, never on a command
line, in a log or inside a sandbox.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

TOKEN_VARIABLES = ("KATA_GIT_TOKEN", "GITHUB_TOKEN")
TIMEOUT_S = 300


@dataclass
class Checkout:
    """A student's repository as it will be graded (`error` says why it cannot be)."""

    path: Path | None
    commit: str = ""
    committed: str = ""  # ISO 8601, the committer's own clock
    late: bool = False  # commits after the deadline exist (the graded one is the last before it)
    error: str = ""


def _token() -> str:
    return next((os.environ[v] for v in TOKEN_VARIABLES if os.environ.get(v)), "")


def _git_env() -> dict[str, str]:
    """git's environment: no prompts, and the token (if any) as an Authorization header set through the
    environment (GIT_CONFIG_*), so that it is on no command line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
    token = _token()
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                   GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
    return env


def _scrubbed(text: str) -> str:
    token = _token()
    return text.replace(token, "***") if token else text


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git; its stdout, or a RuntimeError carrying its last error line (with any token scrubbed)."""
    done = subprocess.run(["git", *args], cwd=cwd, env=_git_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"git exit {done.returncode}"])[-1]
        raise RuntimeError(_scrubbed(why))
    return done.stdout.strip()


def parse_deadline(text: str) -> dt.datetime:
    """An ISO 8601 date-time; without a zone it is UTC."""
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def fetch(source: str, dest: Path, ref: str = "", deadline: dt.datetime | None = None) -> Checkout:
    """Clone `source` (a URL or a path) into `dest` and check out the commit to grade; a Checkout with `error` set
    when it cannot be fetched (never an exception: one repository never stops the class)."""
    try:
        git("clone", "--quiet", "--filter=blob:none", "--no-checkout", source, str(dest))
        head = git("rev-parse", "HEAD", cwd=dest)
        commit = git("rev-parse", f"{ref}^{{commit}}", cwd=dest) if ref else head
        late = False
        if deadline is not None and not ref:
            before = git("rev-list", "-1", f"--before={deadline.isoformat()}", head, cwd=dest)
            if not before:
                return Checkout(None, error=f"截止前没有提交 / no commit before the deadline {deadline.isoformat()}")
            late, commit = before != head, before
        git("checkout", "--quiet", "--detach", commit, cwd=dest)
        committed = git("show", "-s", "--format=%cI", commit, cwd=dest)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        return Checkout(None, error=f"取不到 / cannot fetch {source}: {_scrubbed(str(error))}")
    return Checkout(dest, commit, committed, late)
