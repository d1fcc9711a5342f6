"""Errors of reading sources and extracting features: bad input that stops preparation, one unusable input file (the
caller adds the sample and line), or an extractor that cannot run at all (a missing weights package), which stops
preparation whatever --on-error says."""
from __future__ import annotations

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
