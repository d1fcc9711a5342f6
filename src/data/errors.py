"""Errors of reading sources and extracting features: bad input that stops preparation, one unusable input file (the
caller adds the sample and line), or an extractor that cannot run at all (a missing weights package), which stops
preparation whatever --on-error says."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Optional

from src.commands import OutsideError


class PrepareError(RuntimeError):
    """Preparation (or feature extraction) stopped on bad input (with --on-error fail); nothing was written."""


class PrepareWriteError(PrepareError, OutsideError):
    """Writing the prepared data failed (a full disk); nothing was written. Exit status 1: not the input's fault."""


class FeatureError(ValueError):
    pass


class ExtractorUnavailable(RuntimeError):
    """A pretrained extractor cannot be built here; the message says what to install. `alternative` is the setting
    that prepares new data without it (preparation adds it to the message; a trained model needs the extractor its
    data was prepared with, so inference does not)."""

    def __init__(self, message: str, alternative: Optional[str] = None):
        super().__init__(message)
        self.alternative = alternative


def first_error_line(e: BaseException) -> str:
    """The line of an exception's message that says what went wrong (MindSpore's come framed in banners)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip() and not line.strip().startswith("-")]
    marked = [line for line in lines if line.startswith("[ERROR]")]
    return (marked or lines or [type(e).__name__])[0].removeprefix("[ERROR]").strip()


@contextlib.contextmanager
def written_whole(out: Path, tmp: Path, what: str):
    """Around writing `what` into the folder `tmp` and moving it to `out`: a failed write (a full disk: an OSError
    from our writes, a RuntimeError from MindRecord's) becomes one PrepareWriteError naming `out`; bad input and a
    missing package pass unchanged; `tmp` is removed whatever happens, so nothing half-written is left."""
    try:
        yield
    except (PrepareError, ExtractorUnavailable):
        raise
    except (OSError, RuntimeError) as e:
        free = shutil.disk_usage(out.parent).free / 1e6
        raise PrepareWriteError(f"{out}: writing {what} failed ({first_error_line(e)}); {free:.0f} MB free on its "
                                "disk; nothing was written") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
