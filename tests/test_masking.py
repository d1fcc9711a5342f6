import numpy as np
import pytest

from src.data.masking import (MATCH_CASES, choose_positions, drop_modalities, mask_features, mask_text,
                              matching_cases, matching_donors, max_predictions)


def test_choose_positions_counts_and_validity():
    rng = np.random.default_rng(0)
    valid = np.zeros((4, 20), bool)
    valid[0, :20] = True
    valid[1, 2:12] = True
    valid[2, 5] = True   # one valid token: still one prediction
    slots = max_predictions(20, 0.15)
    pos, w = choose_positions(valid, 0.15, slots, rng)
    assert slots == 3 and pos.shape == w.shape == (4, 3)
    assert w.sum(1).tolist() == [3, 2, 1, 0]  # round(15 % of 20, 10, 1), at least one; none for an empty row
    for r in range(4):
        used = pos[r][w[r] > 0]
        assert valid[r, used].all() and len(set(used)) == len(used) and list(used) == sorted(used)
    assert (pos[w == 0] == 0).all()


def test_text_masking_80_10_10():
    rng = np.random.default_rng(1)
    ids = rng.integers(1000, 2000, (4000, 40)).astype(np.int32)
    pos, w = choose_positions(np.ones_like(ids, bool), 0.15, 6, rng)
    replacement = np.arange(999, 30522)
    out, targets = mask_text(ids, pos, w, rng, 103, replacement)
    np.testing.assert_array_equal(targets, np.take_along_axis(ids, pos, 1))
    new = np.take_along_axis(out, pos, 1)
    n = w.sum()
    assert abs((new == 103).sum() / n - 0.8) < 0.01
    assert abs((new == targets).sum() / n - 0.1) < 0.01 + 0.001  # unchanged (a random draw equal to it is ~0)
    assert ((new != 103) & (new != targets)).sum() / n == pytest.approx(0.1, abs=0.01)
    untouched = np.ones_like(ids, bool)
    np.put_along_axis(untouched, pos, False, 1)
    np.testing.assert_array_equal(out[untouched], ids[untouched])  # only the chosen positions change
    assert abs(w.mean() * 6 / 40 - 0.15) < 1e-9


def test_feature_masking_zeroes_and_keeps_targets():
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((3, 10, 4)).astype(np.float32)
    pos, w = choose_positions(np.ones((3, 10), bool), 0.15, 2, rng)
    out, targets = mask_features(feats, pos, w)
    for r in range(3):
        for p in pos[r]:
            assert (out[r, p] == 0).all()
        np.testing.assert_array_equal(targets[r], feats[r, pos[r]])
    assert np.count_nonzero(np.all(out == 0, axis=2)) == 6 and np.count_nonzero(feats - out) == 6 * 4


def test_modality_drop_rate_and_never_all():
    rng = np.random.default_rng(3)
    present = np.ones((100000, 3), bool)
    present[:20000, 2] = False  # some rows lack audio
    present[:5000, 1] = False   # and a few have text only
    keep = drop_modalities(present, 0.3, rng)
    assert not (keep & ~present).any()  # an absent modality never comes back
    assert keep[present.any(1)].any(1).all()  # never all of a row's modalities
    assert keep[:5000, 0].all()  # a single modality is never dropped
    tri = keep[20000:]
    expected = (0.3 - 0.3 ** 3) / (1 - 0.3 ** 3)  # drop rate once the all-dropped draws are redrawn
    assert abs((~tri).mean() - expected) < 0.01


def test_matching_cases_and_donors():
    rng = np.random.default_rng(4)
    eligible = np.ones(5000, bool)
    eligible[:100] = False
    cases = matching_cases(eligible, [0.5, 0.125, 0.125, 0.125, 0.125], rng)
    assert (cases[:100] == -1).all()
    freq = np.bincount(cases[100:], minlength=5) / 4900
    np.testing.assert_allclose(freq, [0.5, 0.125, 0.125, 0.125, 0.125], atol=0.02)
    donors, final = matching_donors(cases, rng)
    rows = np.arange(len(cases))
    for c, (_, replaced) in enumerate(MATCH_CASES):
        sel = final == c
        for m in range(3):
            moved = donors[sel, m] != rows[sel]
            assert moved.all() if m in replaced else not moved.any()
        assert eligible[donors[sel]].all()  # donors are tri-modal rows too
    none = final == 4
    assert (donors[none, 0] != donors[none, 2]).all()  # text and audio from two different rows
    assert (donors[:100] == rows[:100, None]).all()


def test_matching_without_other_rows_falls_back_to_positive():
    donors, final = matching_donors(np.array([4, -1], np.int32), np.random.default_rng(0))
    assert final.tolist() == [0, -1] and donors.tolist() == [[0, 0, 0], [1, 1, 1]]
