"""Errors of feature extraction: one unusable input file (the caller adds the sample and line), or an extractor that
cannot run at all (a missing weights package), which stops preparation whatever --on-error says."""


class FeatureError(ValueError):
    pass


class ExtractorUnavailable(RuntimeError):
    """A pretrained extractor cannot be built here; the message says what to install."""
