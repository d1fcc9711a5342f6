"""Two-stage retrieval against the all-pairs cross-encoder."""
import numpy as np

from src.infer.retrieval import first_stage, full_ranks, rerank, two_stage_ranks


def toy(seed=0, n=30, d=8):
    """Queries near their own candidate; a 'cross-encoder' that knows a bit more than the embeddings."""
    rng = np.random.default_rng(seed)
    cand = rng.standard_normal((n, d)).astype(np.float32)
    query = cand + 0.9 * rng.standard_normal((n, d)).astype(np.float32)
    exact = rng.standard_normal((n, n))
    exact[np.arange(n), np.arange(n)] += 1.5

    def score_pairs(qi, ci):
        return exact[qi, ci]

    return query, cand, np.eye(n, dtype=bool), score_pairs


def test_two_stage_equals_full_when_k_covers_the_gallery():
    q, c, pos, score = toy()
    np.testing.assert_array_equal(two_stage_ranks(q, c, pos, k=len(c), score_pairs=score, chunk=7),
                                  full_ranks(len(q), len(c), pos, score, chunk=4))


def test_first_stage_top_k_and_ranks_match_a_direct_computation():
    q, c, pos, _ = toy(1)
    top, ranks = first_stage(q, c, pos, k=5, chunk=8)
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(top, np.argsort(-sims, axis=1, kind="stable")[:, :5])
    np.testing.assert_array_equal(ranks, 1 + (sims > np.diag(sims)[:, None]).sum(1))


def test_queries_missed_by_the_first_stage_keep_their_first_stage_rank():
    q, c, pos, score = toy(2)
    _, first = first_stage(q, c, pos, k=3)
    ranks = two_stage_ranks(q, c, pos, k=3, score_pairs=score)
    missed = first > 3
    assert missed.any() and (~missed).any()
    np.testing.assert_array_equal(ranks[missed], first[missed])
    assert (ranks[~missed] <= 3).all()


def test_only_the_top_k_pairs_are_scored():
    q, c, pos, score = toy(3)
    calls = []

    def counting(qi, ci):
        calls.append(len(qi))
        return score(qi, ci)

    two_stage_ranks(q, c, pos, k=4, score_pairs=counting)
    assert sum(calls) == 4 * len(q)


def test_fusion_adds_the_first_stage_cosine_to_the_cross_encoder_score():
    # 1 query, 3 candidates; the first stage ranks the right one (2) first, the cross-encoder third
    top, first, positives = np.array([[2, 0, 1]]), np.array([1]), np.array([[False, False, True]])
    cosines = np.array([[0.9, 0.5, 0.1]])
    cross = {0: 1.0, 1: 2.0, 2: 0.0}

    def score_pairs(qi, ci):
        return np.array([cross[c] for c in ci])
    assert rerank(top, first, positives, score_pairs)[0] == 3  # the cross-encoder alone
    assert rerank(top, first, positives, score_pairs, cosines, fusion=1.0)[0] == 3  # 0.9 < 1.5 < 2.1
    assert rerank(top, first, positives, score_pairs, cosines, fusion=10.0)[0] == 1  # 9 > 6 > 3


def test_rerank_of_the_queries_with_a_correct_candidate_only_gives_the_same_ranks():
    q, c, pos, score = toy(3)
    top, first = first_stage(q, c, pos, 4)
    calls = []

    def counting(qi, ci):
        calls.append(qi)
        return score(qi, ci)

    every = rerank(top, first, pos, score)
    needed = rerank(top, first, pos, counting, all_queries=False)
    np.testing.assert_array_equal(needed, every)
    hits = np.take_along_axis(pos, top, 1).any(1)
    assert 0 < hits.sum() < len(q)  # the toy set has both kinds of query
    np.testing.assert_array_equal(np.unique(np.concatenate(calls)), np.flatnonzero(hits))
