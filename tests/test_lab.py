"""The lab prints the chapter's tables from measurement."""

from kata.lab import build_report


def test_the_reference_lab_has_the_three_chapter_tables():
    report = build_report("reference")
    assert "| int4 | 3.50 | 0.25× |" in report  # 1.1/1.2: 7B memory by format
    assert "| int4-g128 | 3.61 | 0.26× |" in report  # 4.125 bits per weight
    assert report.count("| int8 |") == 3 and "| fp16 | 16 | 0% |" in report  # tables 1, 2 and 3
    assert "not implemented" not in report
