"""The fault suite: each test injects a fault and records (fault, expected, seen); the table prints at the end."""
from __future__ import annotations

import pytest

ROWS = []


@pytest.fixture
def record():
    """record(fault, expected, seen): one row of the printed fault table."""
    def add(fault: str, expected: str, seen: str) -> None:
        ROWS.append((fault, expected, seen))
    return add


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    width = max(len(r[0]) for r in ROWS)
    terminalreporter.write_line(f"\nfaults tried: {len(ROWS)}")
    terminalreporter.write_line(f"{'fault':<{width}} | expected | seen")
    for fault, expected, seen in ROWS:
        terminalreporter.write_line(f"{fault:<{width}} | {expected} | {seen}")
