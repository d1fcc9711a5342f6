"""Pre-training corruption as pure numpy functions over a padded batch (easy to test, no framework state).

- token-level masking: a fixed share of each row's valid tokens (BERT: round(15 % of n), at least 1), BERT's 80/10/10
  replacement for text, zeroed features for image regions and audio tokens;
- modality-level masking: each present modality dropped with probability p, never all of a row's modalities;
- sample-level matching: the paper's 5 cases, built by taking modalities from other rows of the batch.

Modalities are indexed in the order of `src.modality.MODALITIES` (text, image, audio) everywhere.
"""
from __future__ import annotations

import itertools
import math
from typing import Tuple

import numpy as np

from src.modality import AUDIO, IMAGE, MODALITIES, TEXT

# Matching labels. Each case lists which modalities are replaced by another row's.
MATCH_CASES = (
    ("all match", ()),
    ("image+audio match", (TEXT,)),
    ("text+image match", (AUDIO,)),
    ("text+audio match", (IMAGE,)),
    ("none match", (TEXT, AUDIO)),
)


def max_predictions(length: int, prob: float) -> int:
    """Static number of prediction slots for a sequence of `length` tokens."""
    return max(1, math.ceil(length * prob))


def choose_positions(valid: np.ndarray, prob: float, slots: int, rng: np.random.Generator
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Pick round(prob * n) (at least 1, at most `slots`) of each row's n valid positions.

    Returns positions [B, slots] int32 (sorted; unused slots point at 0) and weights [B, slots] float32 (1 = used).
    """
    b, _ = valid.shape
    n = valid.sum(1)
    k = np.where(n > 0, np.minimum(slots, np.maximum(1, np.rint(n * prob))), 0).astype(np.int64)
    scores = np.where(valid, rng.random(valid.shape), np.inf)
    picked = np.argsort(scores, axis=1, kind="stable")[:, :slots]
    used = np.arange(slots)[None, :] < k[:, None]
    positions = np.where(used, picked, np.iinfo(np.int64).max)
    positions = np.sort(positions, axis=1)
    positions = np.where(used, positions, 0)
    return positions.astype(np.int32), used.astype(np.float32)


def mask_text(ids: np.ndarray, positions: np.ndarray, weights: np.ndarray, rng: np.random.Generator, mask_id: int,
              replacement_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """BERT's corruption at the chosen positions: 80 % [MASK], 10 % a random word piece, 10 % unchanged.

    Returns the corrupted ids [B, L] and the targets [B, slots] (0 in unused slots).
    """
    targets = np.where(weights > 0, np.take_along_axis(ids, positions, 1), 0).astype(np.int32)
    draw = rng.random(positions.shape)
    random_tokens = replacement_ids[rng.integers(0, len(replacement_ids), positions.shape)]
    new = np.where(draw < 0.8, mask_id, np.where(draw < 0.9, random_tokens, targets))
    out = ids.copy()
    rows = np.broadcast_to(np.arange(len(ids))[:, None], positions.shape)
    used = weights > 0
    out[rows[used], positions[used]] = new[used]
    return out, targets


def mask_features(feats: np.ndarray, positions: np.ndarray, weights: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Zero the chosen tokens of [B, N, D] features; return (masked features, original features [B, slots, D])."""
    targets = np.take_along_axis(feats, positions[:, :, None], 1) * weights[:, :, None]
    out = feats.copy()
    rows = np.broadcast_to(np.arange(len(feats))[:, None], positions.shape)
    used = weights > 0
    out[rows[used], positions[used]] = 0.0
    return out, targets.astype(np.float32)


def drop_modalities(present: np.ndarray, prob, rng: np.random.Generator) -> np.ndarray:
    """Keep mask [B, M]: each present modality dropped with probability `prob` (one for all, or [M] per modality); a
    row never loses all of them (such draws are redrawn, as the paper skips that case)."""
    keep = present.copy()
    redo = np.ones(len(present), bool)
    while redo.any():
        draw = rng.random(present.shape) >= prob
        keep[redo] = present[redo] & draw[redo]
        redo = present.any(1) & ~keep.any(1)
    return keep


def matching_cases(eligible: np.ndarray, probs, rng: np.random.Generator) -> np.ndarray:
    """A case id (index into MATCH_CASES) for each eligible (tri-modal) row, -1 for the others."""
    p = np.asarray(probs, np.float64)
    p = p / p.sum()
    cases = rng.choice(len(MATCH_CASES), size=len(eligible), p=p)
    return np.where(eligible, cases, -1).astype(np.int32)


def matching_donors(cases: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """For each row and modality, the row it is taken from: itself, or another eligible row for a replaced modality.

    Returns donors [B, 3] and the final cases (rows that find too few other eligible rows fall back to "all match").
    When two modalities are replaced they come from two different rows, so that they do not match each other either.
    """
    b = len(cases)
    donors = np.repeat(np.arange(b)[:, None], 3, axis=1)
    pool = np.flatnonzero(cases >= 0)
    cases = cases.copy()
    replaced_count = np.array([len(r) for _, r in MATCH_CASES])
    cases[(cases > 0) & (replaced_count[np.maximum(cases, 0)] > len(pool) - 1)] = 0
    rows = np.flatnonzero(cases > 0)
    if len(rows) == 0:
        return donors, cases
    m, own = len(pool), np.searchsorted(pool, rows)  # each row's own position in the pool
    first = rng.integers(0, m - 1, len(rows))
    first += first >= own                             # uniform over the pool without the row itself
    second = rng.integers(0, max(m - 2, 1), len(rows))
    lo, hi = np.minimum(own, first), np.maximum(own, first)
    second += second >= lo
    second += second >= hi                            # uniform over the pool without the row and `first`
    for case, (_, replaced) in enumerate(MATCH_CASES):
        sel = cases[rows] == case
        for k, modality in enumerate(replaced):
            donors[rows[sel], modality] = pool[(first, second)[k][sel]]
    return donors, cases


# The modality sets a retrieval matching row can show: every pair and the paper's triple, as evaluation scores them.
RETRIEVAL_VIEWS = tuple(itertools.combinations(range(len(MODALITIES)), 2)) + ((TEXT, IMAGE, AUDIO),)


def retrieval_views(present: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Per row, a view drawn uniformly from the RETRIEVAL_VIEWS its modalities allow and one modality of that view for
    its hard negative to swap. present [B, M] bool -> (view [B, M], swap [B, M] one-hot), float32; a row with fewer
    than two modalities gets zeros (no matching rows)."""
    view = np.zeros(present.shape, np.float32)
    swap = np.zeros(present.shape, np.float32)
    for i, has in enumerate(present):
        options = [v for v in RETRIEVAL_VIEWS if has[list(v)].all()]
        if options:
            chosen = options[rng.integers(len(options))]
            view[i, list(chosen)] = 1.0
            swap[i, chosen[rng.integers(len(chosen))]] = 1.0
    return view, swap


def caption_views(present: np.ndarray, sources, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Text generation: per row, the input set (one of `sources`, tuples of IMAGE/AUDIO) the decoder reads, drawn
    uniformly from those the row has. present [B, M] bool -> (view [B, M] float32, weight [B] float32); a row without
    text or without any of the sources gets weight 0 (it carries no loss)."""
    view = np.zeros(present.shape, np.float32)
    weight = np.zeros(len(present), np.float32)
    for i, has in enumerate(present):
        options = [s for s in sources if has[list(s)].all()]
        if options and has[TEXT]:
            view[i, list(options[rng.integers(len(options))])] = 1.0
            weight[i] = 1.0
    return view, weight
