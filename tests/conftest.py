"""Fixtures for the kata's own tests (tests/). 套件自身测试的夹具。"""

import pytest
import torch


@pytest.fixture
def torch_settings():
    """torch's process-wide settings as they were before the test (threads, deterministic mode, the RNG): a test
    that runs the lab in-process must not leak them into tests that a random order puts after it."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.set_rng_state(rng)
