"""Writing files so that a reader never sees half of one: write under a temporary name, then rename."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomic(path, write: Callable[[Path], None]) -> None:
    """`write(partial)` writes the whole file at a temporary name in `path`'s folder, which then replaces `path` (one
    rename: a reader sees the old file or the new one); a write that fails leaves no partial file behind."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def write_text_atomic(path, text: str) -> None:
    write_atomic(path, lambda partial: partial.write_text(text, encoding="utf-8"))
