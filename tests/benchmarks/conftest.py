"""Fixtures of the GPU benchmarks. GPU 基准的夹具。"""

import pytest


@pytest.fixture(scope="session")
def copy_limit() -> float:
    """The measured device-to-device copy bandwidth (bytes/s), once per session."""
    from kata.timing import copy_bandwidth

    return copy_bandwidth()
