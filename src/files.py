"""Writing files so that a reader never sees half of one: write under a temporary name, then rename."""
from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path, text: str) -> None:
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
