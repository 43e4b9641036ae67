"""The sandbox an answer runs in when it is graded: Linux namespaces, set up with util-linux (unshare, mount,
findmnt, pivot_root, setpriv).

沙箱：评分时答案运行在独立的 Linux 命名空间里（util-linux 的 unshare / mount / findmnt / pivot_root / setpriv）：
只能写自己的临时目录；看不到评分器的文件、上游检出（包括 reference/）和其他进程；没有网络；结束时连同所有
子孙进程一起被杀掉。
Inside it the answer
- sees a new root holding only what it needs, read-only: the system's /usr, /bin, /lib, /etc, the Python
  installation and its site-packages, the C compiler (Triton's), the GPU's device files and the grading tree (the
  kata with the answer copied in) — not the grader's files, not the upstream checkout or its reference/, not the
  results;
- can write only its own temporary folder (HOME and TMPDIR point there);
- has its own PID namespace (its /proc shows only itself) and no network (a new, empty network namespace);
- dies with every descendant when the process that started it dies (PID 1 of the namespace gets SIGKILL), however
  the exercise ended — a forked child, a new session or an atexit handler cannot outlive it;
- holds no capabilities (setpriv clears them all and sets no_new_privs): the mounts cannot be undone.
It needs unprivileged user namespaces (or root): most Linux laptops and containers run with --privileged have them;
GitHub's ubuntu-24.04 runners restrict them through AppArmor (`sudo sysctl -w
kernel.apparmor_restrict_unprivileged_userns=0` lifts that); Docker's default seccomp profile blocks them.
`problem()` says why a sandbox cannot be made here, or None.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

TOOLS = ("unshare", "mount", "umount", "pivot_root", "setpriv", "findmnt")
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
UNSHARE = ["--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child", "--net", "--ipc", "--uts",
           "--propagation", "private"]
DESCRIPTION = "Linux 命名空间 / Linux namespaces (util-linux unshare: user, mount, PID, network; no capabilities)"


def _tool(name: str) -> str:
    """Where util-linux's `name` is (sbin too, which an ordinary user's PATH often lacks), or ''."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    return shutil.which(name, path=search) or ""


def python_paths() -> list[Path]:
    """Where this interpreter and its packages live: they are mounted read-only in every sandbox."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             *site.getsitepackages()}
    return sorted({Path(p) for p in paths if p and os.path.isdir(p)})


def compiler_paths() -> list[Path]:
    """Where the C compiler lives (CC, else cc / gcc / clang on PATH): Triton builds its launcher with it when 5.10
    runs on a GPU. Its installation (the folder above its bin/) is mounted read-only; under /usr it already is."""
    found = [os.environ["CC"]] if os.environ.get("CC") else [shutil.which(name) for name in ("cc", "gcc", "clang")]
    return [Path(os.path.realpath(cc)).parents[1] for cc in found if cc and os.path.isfile(cc)][:1]


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths, without those inside another one of them (it is mounted with its parent), shortest first."""
    kept: list[Path] = []
    for path in sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def setup_script(new_root: Path, readable: Iterable[Path], writable: Iterable[Path], cwd: Path) -> str:
    """The shell script that runs as root of the new user namespace: mounts the new root, pivots into it, drops
    every capability and execs the command ("$@")."""
    q = shlex.quote
    root = str(new_root)
    tools = os.pathsep.join(sorted({os.path.dirname(_tool(t)) for t in TOOLS}))
    lines = ["set -eu", f'outer_path="$PATH"; PATH={q(tools)}:"$PATH"',
             f"mount -t tmpfs -o mode=0755,size=64m sandbox {q(root)}",
             # a read-only remount must keep the flags the source mount has locked (nosuid, nodev, noexec)
             'ro_one() { mount -o remount,bind,ro "$1" 2>/dev/null || '
             'mount -o remount,bind,ro,nosuid,nodev "$1" 2>/dev/null || '
             'mount -o remount,bind,ro,nosuid,nodev,noexec "$1"; }',
             # read-only bind; a folder with mounts inside it (a VM's /usr/local/nvidia in its /usr) can only be
             # bound with them (the kernel refuses to reveal what they cover), and then each is made read-only too
             'ro() { if mount --bind "$1" "$2" 2>/dev/null; then ro_one "$2"; else mount --rbind "$1" "$2" && '
             'for m in $(findmnt -R -n -r -o TARGET "$2"); do ro_one "$m"; done; fi; }']
    for path in _outermost(Path(p) for p in (*SYSTEM_PATHS, *readable) if os.path.lexists(p)):
        inside = q(root + str(path))
        if path.is_symlink() and path.parent == Path("/"):  # /bin -> usr/bin on merged-/usr systems
            lines.append(f"ln -s {q(os.readlink(path))} {inside}")
        elif path.is_dir():
            lines.append(f"mkdir -p {inside} && ro {q(str(path))} {inside}")
        elif path.is_file():
            lines.append(f"mkdir -p {q(root + str(path.parent))} && touch {inside} && ro {q(str(path))} {inside}")
    for path in writable:
        lines.append(f"mkdir -p {q(root + str(path))} && mount --bind {q(str(path))} {q(root + str(path))}")
    lines.append(f"mkdir -p {q(root)}/proc {q(root)}/dev/shm {q(root)}/tmp && mount -t proc proc {q(root)}/proc")
    lines.append(f"mount -t tmpfs -o mode=1777,size=256m shm {q(root)}/dev/shm")
    devices = [*DEVICES, *(p.name for p in Path("/dev").glob("nvidia*") if p.is_char_device())]
    for name in devices:
        lines.append(f"touch {q(root)}/dev/{name} && mount --bind /dev/{name} {q(root)}/dev/{name}")
    lines += [f"cd {q(root)}", "mkdir .old", "pivot_root . .old", "umount -l /.old", "rmdir /.old",
              "mount -o remount,ro /", f"cd {q(str(cwd))}",
              'PATH="$outer_path"',
              f'exec {q(_tool("setpriv"))} --bounding-set=-all --inh-caps=-all --no-new-privs -- "$@"']
    return "\n".join(lines)


def wrap(command: Sequence[str], new_root: Path, readable: Iterable[Path], writable: Sequence[Path],
         cwd: Path) -> list[str]:
    """`command` as it runs in a sandbox: `new_root` is an empty folder to build the new root on; `readable` are
    mounted read-only (with the system and Python paths), `writable` read-write, at the paths they have here."""
    script = setup_script(new_root, [*python_paths(), *compiler_paths(), *readable], writable, cwd)
    return ["unshare", *UNSHARE, "sh", "-c", script, "sandbox", *command]


def environment(env: dict[str, str], home: Path) -> dict[str, str]:
    """env for a sandboxed process: HOME and TMPDIR in its writable folder (the real ones are not there)."""
    return {**env, "HOME": str(home), "TMPDIR": str(home)}


@functools.cache
def problem() -> str | None:
    """Why a sandbox cannot be made on this machine (a line, bilingual), or None when it can: builds one and runs
    this Python in it, checking that the upstream checkout is out of sight and the network is gone."""
    if not sys.platform.startswith("linux"):
        return f"沙箱只支持 Linux / the sandbox needs Linux (this is {sys.platform})"
    missing = [tool for tool in TOOLS if not _tool(tool)]
    if missing:
        return f"缺少 util-linux 工具 / util-linux tools missing: {', '.join(missing)}"
    probe = ("import os, socket, sys; sys.exit(0 if not os.path.exists(sys.argv[1]) and os.getpid() == 1 "
             "and [name for _, name in socket.if_nameindex()] == ['lo'] else 3)")
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp, "root"), Path(tmp, "home")
        root.mkdir()
        home.mkdir()
        hidden = Path(__file__).resolve().parents[2] / "reference"  # the checkout this grader runs from
        command = wrap([sys.executable, "-I", "-c", probe, str(hidden)], root, [], [home], home)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                  env=environment({"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, home))
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"沙箱无法启动 / the sandbox did not start: {error}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return f"沙箱无法建立 / the sandbox cannot be built here: {why}"
    return None
