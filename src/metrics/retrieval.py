"""Retrieval metrics: recall@K and median rank from query-candidate scores.

A query may have several correct candidates (an image with several captions); its rank is that of its best-scored
correct candidate. Ties count against the query: the rank is 1 + the number of wrong candidates scoring at least as
high as the best correct one, so a model that scores everything alike gets the worst ranks, never perfect ones.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def best_positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """scores [Q, C] (higher = better), positives [Q, C] bool -> 1-based rank of each query's best correct candidate.

    Works on any row chunk of the full matrix, so callers can score a large gallery in pieces."""
    scores = np.asarray(scores, np.float64)
    positives = np.asarray(positives, bool)
    if scores.shape != positives.shape:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} differ in shape")
    missing = np.flatnonzero(~positives.any(1))
    if len(missing):
        raise ValueError(f"{len(missing)} queries have no correct candidate (first: query {missing[0]})")
    best = np.where(positives, scores, -np.inf).max(1, keepdims=True)
    beaten_by = (scores >= best) & ~positives
    return 1 + beaten_by.sum(1)


def recall_summary(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """{'R@1': %, 'R@5': %, 'R@10': %, 'median_rank': ...} from 1-based ranks."""
    ranks = np.asarray(ranks)
    out = {f"R@{k}": float(100.0 * (ranks <= k).mean()) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    return out
