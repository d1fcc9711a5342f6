"""Writing files so that a reader never sees half of one: write under a temporary name, then rename."""
from __future__ import annotations

import hashlib
import os
import shutil
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


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`; an older `out` is moved aside first and deleted after (a reader sees
    the old folder or the new one, never a mix)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def file_digest(path) -> str:
    """The SHA-256 of a file's bytes (hex), read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
