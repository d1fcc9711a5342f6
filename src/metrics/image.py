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


def caption_candidates(text_codes: np.ndarray, rows: np.ndarray, count: int, rng) -> np.ndarray:
    """[len(rows), count] item indices: each row itself, then count - 1 items with a different caption (text_codes
    equal means the same caption), drawn without replacement. `count` is cut to what every row can have."""
    distinct = len(np.unique(text_codes))
    count = min(count, distinct)
    out = np.empty((len(rows), count), np.int64)
    for i, row in enumerate(rows):
        others = np.flatnonzero(text_codes != text_codes[row])
        out[i, 0] = row
        out[i, 1:] = rng.choice(others, count - 1, replace=False)
    return out


def own_caption_ranks(scores: np.ndarray) -> np.ndarray:
    """scores [N, C], column 0 the own caption's: its rank (0 = first; ties count against it)."""
    return (scores[:, 1:] >= scores[:, :1]).sum(1)


def colour_agreement(generated: np.ndarray, truth: np.ndarray, same_image: np.ndarray) -> float:
    """How often a generated image's mean colour is nearer its own ground truth's than another item's (pairs of items
    with different images; 0.5 is chance): a coarse check that the caption steers the picture."""
    g, t = generated.mean((1, 2)), truth.mean((1, 2))
    distance = np.linalg.norm(g[:, None] - t[None], axis=-1)  # [generated, truth]
    nearer = distance < np.diag(distance)[:, None]  # another truth nearer than the own one
    tied = distance == np.diag(distance)[:, None]
    other = ~same_image
    return float(1.0 - ((nearer + 0.5 * tied) * other).sum() / max(other.sum(), 1))
