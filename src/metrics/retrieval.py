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


def chance_recall(num_candidates: int, positives_per_query: np.ndarray, ks: Sequence[int] = (1, 5, 10)
                  ) -> Dict[str, float]:
    """What random scores achieve, in `recall_summary`'s form: R@K is the mean over queries of the probability that
    one of a query's m correct candidates lands in the top K; median_rank is the median over queries of the median
    rank of the first correct one."""
    n = num_candidates
    m = np.asarray(positives_per_query, np.int64)
    found = {}  # m -> P(first correct candidate at rank <= r) for r = 1..n
    for count in np.unique(m):
        i = np.arange(n)
        found[count] = 1.0 - np.cumprod(np.clip(n - count - i, 0, None) / (n - i))
    out = {f"R@{k}": float(100.0 * np.mean([found[c][min(k, n) - 1] for c in m])) for k in ks}
    out["median_rank"] = float(np.median([1 + np.searchsorted(found[c], 0.5) for c in m]))
    return out
