"""Retrieval and classification metrics against cases checked by hand."""
import numpy as np
import pytest

from src.metrics.classification import average_precision, mean_average_precision
from src.metrics.retrieval import best_positive_ranks, chance_recall, recall_summary


def test_ranks_use_the_best_correct_candidate():
    scores = np.array([[0.9, 0.1, 0.5, 0.3],     # correct: 2 -> beaten by 0 only: rank 2
                       [0.2, 0.8, 0.7, 0.1],     # correct: 1 -> rank 1
                       [0.4, 0.3, 0.2, 0.1]])    # correct: 2 and 3 -> best is 2 (0.2), beaten by 0, 1: rank 3
    positives = np.zeros((3, 4), bool)
    positives[0, 2] = positives[1, 1] = positives[2, 2] = positives[2, 3] = True
    np.testing.assert_array_equal(best_positive_ranks(scores, positives), [2, 1, 3])


def test_ties_count_against_the_query():
    ranks = best_positive_ranks(np.zeros((3, 5)), np.eye(3, 5, dtype=bool))
    np.testing.assert_array_equal(ranks, [5, 5, 5])  # constant scores are the worst case, not a perfect score


def test_recall_and_median_rank():
    out = recall_summary(np.array([1, 2, 6, 11, 1]))
    assert out == {"R@1": 40.0, "R@5": 60.0, "R@10": 80.0, "median_rank": 2.0}


def test_queries_without_a_correct_candidate_are_an_error():
    with pytest.raises(ValueError, match="query 1"):
        best_positive_ranks(np.zeros((2, 2)), np.array([[True, False], [False, False]]))


def test_average_precision_by_hand():
    # ranking: pos, neg, pos, neg -> precisions at the positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    assert average_precision([0.1, 0.2, 0.3], [1, 1, 1]) == pytest.approx(1.0)
    # a tie between a positive and a negative at the top: precision 1/2 for that positive, whatever the order
    assert average_precision([0.5, 0.5, 0.1], [1, 0, 0]) == pytest.approx(0.5)
    assert average_precision([0.5, 0.5, 0.1], [0, 1, 0]) == pytest.approx(0.5)


def test_mean_average_precision_skips_and_counts_empty_classes():
    scores = np.array([[0.9, 0.2, 0.5], [0.8, 0.7, 0.4], [0.1, 0.6, 0.3]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    out = mean_average_precision(scores, labels)
    # class 0 ranks pos (0.9), neg (0.8), pos (0.1): (1 + 2/3) / 2; class 1 ranks its positive (0.7) first: 1.0
    assert out["mAP"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1.0) / 2)
    assert out["classes"] == 2 and out["classes_without_positives"] == 1


def test_chance_recall_by_hand():
    # one correct candidate among 100: R@K = K %, the first correct one is equally likely at ranks 1..100
    one = chance_recall(100, np.ones(7, int))
    assert one["R@1"] == pytest.approx(1.0) and one["R@10"] == pytest.approx(10.0) and one["median_rank"] == 50
    # 2 correct among 4: P(rank 1) = 1/2, P(within 2) = 1 - (2/4)(1/3) = 5/6; a query with 1 correct: 1/4, 2/4
    mixed = chance_recall(4, np.array([2, 1]), ks=(1, 2))
    assert mixed["R@1"] == pytest.approx(100 * (0.5 + 0.25) / 2)
    assert mixed["R@2"] == pytest.approx(100 * (5 / 6 + 0.5) / 2)
    assert mixed["median_rank"] == pytest.approx(1.5)  # medians 1 and 2
