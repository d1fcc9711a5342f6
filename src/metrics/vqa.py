"""The official VQA accuracy, overall and per answer type, and the majority-answer baselines reported beside it."""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence

import numpy as np

from src.data.answers import ANSWER_TYPES, clean, digits_and_articles, normalize_answer, strip_punctuation


def question_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """One question's score as the VQA evaluation computes it: for each of the human answers, the prediction scores
    min(1, matching answers among the other humans / 3); the score is their mean (over the ten leave-one-out
    subsets of ten answers). As in the official script, answers and prediction are normalised only when the humans
    disagree (a prediction must match unanimous answers as they are written, after trimming)."""
    if not human_answers:
        raise ValueError("a question needs at least one human answer")
    prediction, answers = clean(prediction), [clean(a) for a in human_answers]
    if len(set(answers)) > 1:
        prediction = digits_and_articles(strip_punctuation(prediction))
        answers = [digits_and_articles(strip_punctuation(a)) for a in answers]
    matches = sum(a == prediction for a in answers)
    # leaving out answer i leaves `matches - (answer i matched)` matching answers
    return float(np.mean([min(1.0, (matches - (a == prediction)) / 3.0) for a in answers]))


def vqa_accuracy(predictions: Sequence[str], answer_lists: Sequence[Sequence[str]]) -> np.ndarray:
    """[questions] float64: each prediction's VQA accuracy (0..1) against its human answers."""
    if len(predictions) != len(answer_lists):
        raise ValueError(f"{len(predictions)} predictions for {len(answer_lists)} questions")
    return np.array([question_accuracy(p, a) for p, a in zip(predictions, answer_lists)], np.float64)


def accuracy_table(scores: np.ndarray, answer_types: Sequence[str]) -> Dict[str, float]:
    """{"overall": %, "yes/no": %, "number": %, "other": %} (a type without questions is left out), and the count
    of each in "questions"."""
    scores, types = np.asarray(scores, np.float64), np.asarray(answer_types)
    out = {"overall": 100.0 * float(scores.mean()) if len(scores) else 0.0}
    for t in ANSWER_TYPES:
        if (types == t).any():
            out[t] = 100.0 * float(scores[types == t].mean())
    out["questions"] = {"overall": int(len(scores)), **{t: int((types == t).sum()) for t in ANSWER_TYPES}}
    return out


def majority_answers(train_answers: Sequence[str], train_types: Sequence[str]) -> Dict[str, str]:
    """The most common (normalised) multiple-choice answer of the training questions, overall ("overall") and per
    answer type: the baselines a model must beat (the VQA paper's "prior" and "per Q-type prior")."""
    normal = [normalize_answer(a) for a in train_answers]
    out = {"overall": _most_common(normal)}
    for t in ANSWER_TYPES:
        of_type = [a for a, ty in zip(normal, train_types) if ty == t]
        if of_type:
            out[t] = _most_common(of_type)
    return out


def majority_predictions(majority: Dict[str, str], answer_types: Sequence[str], per_type: bool) -> List[str]:
    """Each question's baseline answer: the overall majority, or its answer type's."""
    return [majority.get(t, majority["overall"]) if per_type else majority["overall"] for t in answer_types]


def _most_common(answers: List[str]) -> str:
    counts = Counter(answers)
    return min(counts, key=lambda a: (-counts[a], a))  # ties: alphabetical, so the baseline is deterministic
