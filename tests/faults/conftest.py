"""The fault suite: each test injects a fault and records (fault, expected, seen); the table prints at the end. The
rows travel in each test's report (its user_properties), so the table is whole when pytest-xdist runs the tests in
several worker processes."""
from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

import train as train_py
from tests.conftest import ROOT

TINY = str(ROOT / "config" / "pretrain_tiny.yaml")

ROWS = []


@pytest.fixture
def record(request):
    """record(fault, expected, seen): one row of the printed fault table."""
    def add(fault: str, expected: str, seen: str) -> None:
        request.node.user_properties.append(("fault", (fault, expected, seen)))
    return add


def pytest_runtest_logreport(report):
    if report.when == "call":
        ROWS.extend(tuple(row) for name, row in report.user_properties if name == "fault")


def train(prepared, out: Path, *extra) -> int:
    """train.py: 8 tiny pre-training steps with dropout, a checkpoint every 2, all kept."""
    return train_py.main(["--config", TINY, "--set", f"data.path={prepared}", f"train.output_dir={out}",
                          "train.max_steps=8", "train.save_every=2", "train.keep_checkpoints=0", *extra])


@pytest.fixture(scope="session")
def whole(prepared, tmp_path_factory):
    """An uninterrupted 8-step run with a checkpoint every 2 steps."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert train(prepared, out) == 0
    return out


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of `size` mounted at `folder` for the block (skips the test where mounting needs root it lacks)."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)])


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    width = max(len(r[0]) for r in ROWS)
    terminalreporter.write_line(f"\nfaults tried: {len(ROWS)}")
    terminalreporter.write_line(f"{'fault':<{width}} | expected | seen")
    for fault, expected, seen in ROWS:
        terminalreporter.write_line(f"{fault:<{width}} | {expected} | {seen}")
