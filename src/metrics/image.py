"""Image reconstruction metrics."""
from __future__ import annotations

import numpy as np


def psnr(images: np.ndarray, references: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each image [N, ...] against its reference (values in [0, peak]); an exact
    copy scores inf."""
    error = ((np.asarray(images, np.float64) - np.asarray(references, np.float64)) ** 2)
    mse = error.reshape(len(error), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak ** 2 / mse)


def mean_colour(images: np.ndarray) -> np.ndarray:
    """Each image [N, H, W, 3] replaced by its mean colour: the baseline a reconstruction has to beat."""
    return np.broadcast_to(images.mean((1, 2), keepdims=True), images.shape)


def code_usage(codes: np.ndarray, codebook_size: int) -> dict:
    """How much of the codebook a set of code grids uses: distinct codes and the perplexity of their frequencies."""
    counts = np.bincount(np.asarray(codes).reshape(-1), minlength=codebook_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return {"codes_used": int((counts > 0).sum()), "codebook_size": codebook_size,
            "perplexity": float(np.exp(-(p * np.log(p)).sum()))}
