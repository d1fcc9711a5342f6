"""Two-stage retrieval: a fast first stage over pooled single-modality embeddings (cosine similarity, all queries
against all candidates in row chunks), then a cross-encoder rerank of each query's top k.

The final order of a query's candidates is its top k in cross-encoder order, then the rest in first-stage order. Its
rank is therefore the rerank rank when a correct candidate made the top k, else the first-stage rank (every top-k
candidate is then wrong and scored above it anyway). Memory is bounded by `chunk` x gallery size, never the full
query x gallery matrix of floats.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

from src.metrics.retrieval import best_positive_ranks

# score_pairs(query_indices [N], candidate_indices [N]) -> cross-encoder scores [N]
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


L2_EPS = 1e-6  # the smallest norm divided by (a zero row stays zero); the graph's l2_normalise uses the same


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows of `x` scaled to unit length, as the graph's l2_normalise (src/model/losses.py) does."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), L2_EPS)


def first_stage(queries: np.ndarray, candidates: np.ndarray, positives: np.ndarray, k: int,
                chunk: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
    """Cosine top-k candidate indices [Q, k] (best first) and each query's first-stage rank [Q]."""
    q, c = normalise(queries), normalise(candidates)
    k = min(k, len(c))
    top = np.empty((len(q), k), np.int64)
    ranks = np.empty(len(q), np.int64)
    for start in range(0, len(q), chunk):
        rows = slice(start, start + chunk)
        sims = q[rows] @ c.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        top[rows] = np.take_along_axis(part, order, 1)
        ranks[rows] = best_positive_ranks(sims, positives[rows])
    return top, ranks


def two_stage_ranks(queries: np.ndarray, candidates: np.ndarray, positives: np.ndarray, k: int,
                    score_pairs: PairScorer, chunk: int = 1024) -> np.ndarray:
    """1-based rank of each query's best correct candidate after the cross-encoder reranks the first stage's top k."""
    positives = np.asarray(positives, bool)
    top, ranks = first_stage(queries, candidates, positives, k, chunk)
    return rerank(top, ranks, positives, score_pairs)


def rerank(top: np.ndarray, first_ranks: np.ndarray, positives: np.ndarray, score_pairs: PairScorer,
           first_scores: np.ndarray = None, fusion: float = 0.0, all_queries: bool = True) -> np.ndarray:
    """The second stage over `first_stage`'s output: ranks after the cross-encoder reorders each query's top k, by
    its score plus `fusion` x the first stage's cosine (`first_scores` [Q, k]; fusion 0: the cross-encoder alone).

    With all_queries False only the queries with a correct candidate in their top k are scored: for the others every
    top-k candidate is wrong, so no order of them changes the rank (the same ranks for a fraction of the pairs; an
    evaluation's shortcut, not a search's, which cannot know the correct candidates)."""
    ranks = first_ranks.copy()
    top_positive = np.take_along_axis(np.asarray(positives, bool), top, 1)
    scored = np.arange(len(top)) if all_queries else np.flatnonzero(top_positive.any(1))
    if not len(scored):
        return ranks
    k = top.shape[1]
    cross = np.asarray(score_pairs(np.repeat(scored, k), top[scored].reshape(-1)), np.float64).reshape(-1, k)
    if fusion:
        cross = cross + fusion * first_scores[scored]
    hit = top_positive[scored].any(1)
    ranks[scored[hit]] = best_positive_ranks(cross[hit], top_positive[scored[hit]])
    return ranks


def full_ranks(num_queries: int, num_candidates: int, positives: np.ndarray, score_pairs: PairScorer,
               chunk: int = 64) -> np.ndarray:
    """The all-pairs cross-encoder baseline: every query against every candidate."""
    ranks = np.empty(num_queries, np.int64)
    candidates = np.arange(num_candidates)
    for start in range(0, num_queries, chunk):
        rows = np.arange(start, min(start + chunk, num_queries))
        scores = score_pairs(np.repeat(rows, num_candidates), np.tile(candidates, len(rows)))
        ranks[rows] = best_positive_ranks(np.asarray(scores).reshape(len(rows), num_candidates), positives[rows])
    return ranks
