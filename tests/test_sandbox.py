"""The grading sandbox (kata/grade/sandbox.py): what a sandboxed process can and cannot reach, and the grader's
refusal to grade without one."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kata.grade import sandbox
from kata.grade.__main__ import main as grade_main
from kata.grade.results import results_json, summary_markdown
from kata.harness.target import ROOT

needs_sandbox = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")


def run_sandboxed(tmp_path: Path, code: str, readable=(), timeout: float = 60) -> subprocess.CompletedProcess:
    """Python `code` in a sandbox whose only writable folder is tmp_path/home."""
    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    command = sandbox.wrap([sys.executable, "-I", "-c", textwrap.dedent(code)], root, readable, [home], home)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=sandbox.environment({"PATH": "/usr/bin:/bin"}, home))


@needs_sandbox
def test_the_upstream_checkout_and_its_reference_are_out_of_sight(tmp_path):
    done = run_sandboxed(tmp_path, f"""
        import os
        print(os.path.exists({str(ROOT / 'reference')!r}), os.path.exists({str(ROOT / 'kata')!r}))
    """)
    assert done.stdout.split() == ["False", "False"], done.stderr


@needs_sandbox
def test_only_its_own_folder_is_writable(tmp_path):
    done = run_sandboxed(tmp_path, """
        import os, sys
        for path in ("/etc/kata-probe", sys.prefix + "/kata-probe", "/kata-probe", os.environ["HOME"] + "/ok"):
            try:
                open(path, "w").close()
                print("wrote", path)
            except OSError:
                pass
    """)
    assert done.stdout.split() == ["wrote", str(tmp_path / "home" / "ok")], done.stdout + done.stderr


@needs_sandbox
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the inner folder needs root")
def test_a_readable_folder_with_a_mount_inside_it_is_read_only_throughout(tmp_path):
    """As a VM's /usr holding /usr/local/nvidia: the kernel binds such a folder only with its inner mounts."""
    outer = tmp_path / "outer"
    (outer / "inner").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "inner", str(outer / "inner")], check=True)
    try:
        (outer / "inner" / "seen").write_text("yes")
        done = run_sandboxed(tmp_path, f"""
            print(open({str(outer / 'inner' / 'seen')!r}).read())
            for path in ({str(outer / 'probe')!r}, {str(outer / 'inner' / 'probe')!r}):
                try:
                    open(path, "w").close()
                    print("wrote", path)
                except OSError:
                    pass
        """, readable=[outer])
    finally:
        subprocess.run(["umount", str(outer / "inner")], check=True)
    assert done.stdout.split() == ["yes"], done.stdout + done.stderr


@needs_sandbox
def test_there_is_no_network_and_no_other_process(tmp_path):
    done = run_sandboxed(tmp_path, """
        import os, socket
        print([name for _, name in socket.if_nameindex()], sorted(p for p in os.listdir("/proc") if p.isdigit()))
        socket.create_connection(("127.0.0.1", 22), timeout=2)
    """)
    assert done.stdout.strip() == "['lo'] ['1']", done.stdout + done.stderr
    assert "OSError" in done.stderr or "Error" in done.stderr, "a connection must fail"


@needs_sandbox
def test_a_child_in_a_new_session_dies_with_the_sandbox(tmp_path):
    """A forked child that leaves the process group and would outlive the answer: it dies with PID 1."""
    marker = tmp_path / "home" / "alive"
    done = run_sandboxed(tmp_path, f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            for _ in range(40):
                open({str(marker)!r}, "a").write("x")
                time.sleep(0.1)
            os._exit(0)
        time.sleep(0.3)
    """)
    assert done.returncode == 0, done.stderr
    size = marker.stat().st_size
    time.sleep(1.0)
    assert marker.stat().st_size == size, "the child kept writing after the sandbox ended"


@needs_sandbox
def test_a_sandboxed_process_holds_no_capabilities(tmp_path):
    done = run_sandboxed(tmp_path, """
        print([line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff")][0])
    """)
    assert done.stdout.strip() == "0000000000000000", done.stderr


def test_without_a_sandbox_the_grader_refuses_and_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "problem", lambda: "no user namespaces (test)")
    assert grade_main(["--out", str(tmp_path), "--only", "ex1_1"]) == 2
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["status"] == "error" and "no user namespaces (test)" in data["message"]
    assert "--unsandboxed" in capsys.readouterr().err


def test_the_results_say_when_no_sandbox_was_used():
    data = results_json([], "exercises", no_sandbox="no user namespaces (test)")
    assert data["quant_kata"]["sandbox"]["used"] is False
    assert "no user namespaces (test)" in data["quant_kata"]["sandbox"]["detail"]
    assert "no sandbox: no user namespaces (test)" in summary_markdown([], "exercises", [], "no user namespaces (test)")
    assert results_json([], "exercises")["quant_kata"]["sandbox"] == {"used": True, "detail": sandbox.DESCRIPTION}
