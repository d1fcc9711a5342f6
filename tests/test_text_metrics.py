"""Caption and speech-recognition metrics against hand-computed cases and the independent implementations
(pycocoevalcap's BLEU and CIDEr-D, jiwer's WER and CER)."""
import math

import numpy as np
import pytest

from src.metrics.text import bleu, cider_d, edit_distance, error_rate, rouge_l, scoring_words, text_metrics

HYPS = ["a man riding a red horse", "two dogs play in the snow", "a plate of food", "", "cat on a mat",
        "the quick brown fox jumps", "a red car parked on the street near a shop"]
REFS = [["a man rides a horse", "a person riding a brown horse on a beach"],
        ["two dogs playing in snow", "dogs running through the snow"],
        ["a plate with food on it", "a dish of food and a fork"],
        ["a bird on a wire"],
        ["a cat sitting on a mat", "the cat is on the mat"],
        ["a quick brown fox jumps over the dog"],
        ["a red car on the street", "a car parked near a shop on a street"]]


def tokenised():
    return [h.split() for h in HYPS], [[r.split() for r in rs] for rs in REFS]


def test_bleu_by_hand():
    # hyp "the cat sat" vs ref "the cat sat on the mat": every n-gram matches, brevity penalty exp(1 - 6/3)
    scores = bleu([["the", "cat", "sat"]], [[["the", "cat", "sat", "on", "the", "mat"]]], max_n=3)
    np.testing.assert_allclose(scores, [math.exp(-1.0)] * 3)
    # clipping: "the the the" against "the cat": 1 of 3 unigrams count, no bigram matches
    assert bleu([["the"] * 3], [[["the", "cat"]]], max_n=2) == pytest.approx([1 / 3, 0.0])


def pycocoevalcap_scores(module: str, scorer: str, *args, **options):
    """pycocoevalcap's corpus score of HYPS against REFS (its own tokenisation: none, as ours here)."""
    coco = pytest.importorskip(f"pycocoevalcap.{module}.{module}")
    expected, _ = getattr(coco, scorer)(*args).compute_score({i: rs for i, rs in enumerate(REFS)},
                                                             {i: [h] for i, h in enumerate(HYPS)}, **options)
    return expected


def test_bleu_matches_pycocoevalcap():
    np.testing.assert_allclose(bleu(*tokenised()), pycocoevalcap_scores("bleu", "Bleu", 4, verbose=0), atol=1e-6)


def test_cider_matches_pycocoevalcap():
    assert cider_d(*tokenised()) == pytest.approx(pycocoevalcap_scores("cider", "Cider"), abs=1e-9)


def test_rouge_l_matches_pycocoevalcap_and_by_hand():
    assert rouge_l(*tokenised()) == pytest.approx(pycocoevalcap_scores("rouge", "Rouge"), abs=1e-12)
    # "the cat sat" vs "the cat sat on the mat": LCS 3, precision 1, recall 1/2: 2.44 * 0.5 / (0.5 + 1.44)
    assert rouge_l([["the", "cat", "sat"]], [[["the", "cat", "sat", "on", "the", "mat"]]]) == \
        pytest.approx(2.44 * 0.5 / 1.94)
    assert rouge_l([[]], [[["a"]]]) == 0.0


def test_cider_of_a_perfect_caption_is_high_and_of_an_empty_one_zero():
    refs = [[["a", "dog", "runs"]], [["a", "cat", "sleeps"]], [["two", "birds", "fly"]]]
    perfect = cider_d([r[0] for r in refs], refs)
    assert perfect > 5.0
    assert cider_d([[], [], []], refs) == 0.0
    assert bleu([[], [], []], refs) == [0.0] * 4


def test_edit_distance_and_error_rates_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    # one substitution + one deletion over 5 reference words
    assert error_rate([["a", "cat", "on", "mat"]], [["a", "dog", "on", "the", "mat"]]) == pytest.approx(40.0)
    assert error_rate([[]], [["two", "words"]]) == 100.0  # an empty prediction deletes every word
    with pytest.raises(ValueError, match="empty"):
        error_rate([["a"]], [[]])


def test_error_rates_match_jiwer():
    jiwer = pytest.importorskip("jiwer")
    refs = [r[0] for r in REFS]
    hyps = [h if h else "x" for h in HYPS]  # jiwer refuses empty hypotheses in some versions
    ours = text_metrics(hyps, [[r] for r in refs], ["en"] * len(refs))
    assert ours["WER"] == pytest.approx(100.0 * jiwer.wer(refs, hyps))
    assert ours["CER"] == pytest.approx(100.0 * jiwer.cer(refs, hyps))


def test_chinese_is_scored_on_words_or_characters():
    assert scoring_words("我爱北京天安门", "zh", "char") == list("我爱北京天安门")
    words = scoring_words("我爱北京天安门", "zh", "jieba")
    assert "".join(words) == "我爱北京天安门" and len(words) < 7
    out = text_metrics(["我爱北京"], [["我爱北京天安门"]], ["zh"], chinese="char")
    assert out["CER"] == pytest.approx(100.0 * 3 / 7)  # three characters deleted
    assert scoring_words("A Dog, running!") == ["a", "dog", "running"]
