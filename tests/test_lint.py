"""The lint every commit passes: ruff with the project's ruff.toml (pycodestyle errors and warnings, pyflakes, 120
columns) over the whole repository."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_the_repository_passes_ruff():
    pytest.importorskip("ruff", reason="ruff is in requirements-test.txt")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_reads_the_project_settings():
    """A line of 121 characters fails: the check is the project's own, not ruff's defaults (88 columns or none)."""
    pytest.importorskip("ruff", reason="ruff is in requirements-test.txt")
    long_line = "x = " + repr("a" * 115) + "\n"
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", "src/long.py", "-"],
                          cwd=ROOT, input=long_line, capture_output=True, text=True, timeout=120)
    assert len(long_line.rstrip()) == 121 and done.returncode == 1 and "E501" in done.stdout, done.stdout
    fits = "x = " + repr("a" * 114) + "\n"
    assert subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", "src/ok.py", "-"],
                          cwd=ROOT, input=fits, capture_output=True, text=True, timeout=120).returncode == 0
