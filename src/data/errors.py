"""The error a feature extractor raises for one unusable input file; the caller adds the sample and line."""


class FeatureError(ValueError):
    pass
