"""kata.harness.syntax parses from several threads at once, as the grader's side-by-side exercise runs do.

On CPython 3.11 two `ast.parse` calls at once can fail ("AST constructor recursion depth mismatch", gh-106905); a
thread switch inside the constructor is what it takes, and a garbage-collector callback that yields gives one.
"""

import gc
import sys
import threading
import time

from kata.harness import syntax
from kata.harness.target import ROOT

SOURCE = (ROOT / "exercises" / "test_ex5_12_gguf_formats.py").read_text(encoding="utf-8")


def test_parsing_from_four_threads_at_once_never_fails():
    failures: list[BaseException] = []

    def parse_often():
        for _ in range(50):
            try:
                syntax.parse(SOURCE)
            except SystemError as err:
                failures.append(err)

    def yield_thread(phase, info):
        time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    gc.callbacks.append(yield_thread)
    try:
        threads = [threading.Thread(target=parse_often) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.callbacks.remove(yield_thread)
        sys.setswitchinterval(interval)
    assert not failures, failures[:1]
