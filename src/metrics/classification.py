"""Multi-label classification: mean average precision (the paper's Table 2 metric)."""
from __future__ import annotations

from typing import Dict

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: sum over score thresholds of (recall gained) x (precision at that threshold). Items with equal
    scores enter together, so the result does not depend on how ties are ordered."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    positives = labels.sum()
    if positives == 0:
        raise ValueError("average precision needs at least one positive item")
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # end index of each group of equal scores
    hits = np.cumsum(labels)[last_of_tie]
    precision = hits / (last_of_tie + 1)
    recall_gain = np.diff(np.r_[0, hits]) / positives
    return float((recall_gain * precision).sum())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """scores, labels [N, classes] -> {'mAP': %, 'classes': scored classes, 'classes_without_positives': n}.
    Classes with no positive item cannot be scored; they are counted, not silently averaged in."""
    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    present = labels.any(0)
    aps = [average_precision(scores[:, c], labels[:, c]) for c in np.flatnonzero(present)]
    if not aps:
        raise ValueError("no class has a positive item")
    return {"mAP": 100.0 * float(np.mean(aps)), "classes": int(present.sum()),
            "classes_without_positives": int((~present).sum())}
