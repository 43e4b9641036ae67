"""The lab prints the chapter's tables from measurement on the real model."""

import pytest

from kata.lab import build_report


@pytest.mark.slow
def test_the_reference_lab_has_the_chapter_tables_and_measured_memory():
    report = build_report("reference", quality=False)
    assert "| int4 | 3.50 | 0.25× |" in report  # 1.1/1.2: 7B memory by format
    assert "| int4-g128 | 3.61 | 0.26× |" in report  # 4.125 bits per weight
    assert "| fp16 | 16 | 0% |" in report  # 3.1: saving next to error
    assert "| layers.10.mlp.down_proj |" in report  # 4.1 Q2 on real activations
    # 5.3: packed W4 g64 with an fp16 scale and a uint8 zero point per group is 4 + 24/64 bits, exactly.
    assert "| int4 g64 asym (W4A16) | 4.375 | 58060800 | 58060800 | 4.375 |" in report
    assert "not implemented" not in report
