"""Text generation metrics: BLEU-1..4, CIDEr-D and ROUGE-L for captions, WER and CER for speech recognition.

Every metric works on scoring words (`scoring_words`): English is lower-cased and split at spaces and punctuation;
Chinese is split into jieba words (or characters). A caption may have several references (every caption of the same
image); an empty prediction scores 0 (BLEU, CIDEr) or counts every reference word as deleted (WER), never raises.

BLEU follows Papineni et al. at corpus level: clipped n-gram counts against the most generous reference, the brevity
penalty against the reference length closest to each hypothesis (the shorter on ties), as the COCO caption evaluation
does. CIDEr-D follows Vedantam et al. with the COCO settings: n = 1..4, tf-idf from raw counts with document
frequencies over the evaluated reference set, hypothesis weights clipped at the reference's, a Gaussian length penalty
(sigma 6), x10.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np

from src.data.tokenizer import _CJK, _jieba, is_chinese

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def scoring_words(text: str, lang: str = "en", chinese: str = "jieba") -> List[str]:
    """The words a metric compares: lower case, no punctuation; Chinese as jieba words or single characters."""
    text = _PUNCT.sub(" ", text.lower())
    if not (is_chinese(lang) or _CJK.search(text)):
        return text.split()
    if chinese == "char":
        return [c for word in text.split() for c in (list(word) if _CJK.search(word) else [word])]
    return [w for w in _jieba().lcut(text) if w.strip()]


def ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
         max_n: int = 4) -> List[float]:
    """Corpus BLEU-1..max_n (0..1) of word lists against lists of reference word lists."""
    _check_pairs(hypotheses, references)
    matched, guessed = np.zeros(max_n), np.zeros(max_n)
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        hyp_len += len(hyp)
        ref_len += min((len(r) for r in refs), key=lambda length: (abs(length - len(hyp)), length))
        for n in range(1, max_n + 1):
            counts = ngrams(hyp, n)
            most = Counter()
            for r in refs:
                most |= ngrams(r, n)  # the largest count of each n-gram in any one reference
            matched[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            guessed[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0:
        return [0.0] * max_n
    brevity = 1.0 if hyp_len >= ref_len else math.exp(1.0 - ref_len / hyp_len)
    scores, log_sum = [], 0.0
    for n in range(max_n):
        if matched[n] == 0:
            scores.extend([0.0] * (max_n - n))
            break
        log_sum += math.log(matched[n] / guessed[n])
        scores.append(brevity * math.exp(log_sum / (n + 1)))
    return scores


def cider_d(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
            max_n: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D: the mean over items of the per-item score (x10 scale)."""
    _check_pairs(hypotheses, references)
    doc_freq = Counter()
    for refs in references:
        doc_freq.update({g for r in refs for n in range(1, max_n + 1) for g in ngrams(r, n)})
    log_docs = math.log(float(len(references)))

    def tfidf(words):
        vectors = [{g: c * (log_docs - math.log(max(1.0, doc_freq[g]))) for g, c in ngrams(words, n).items()}
                   for n in range(1, max_n + 1)]
        return vectors, [math.sqrt(sum(v * v for v in vec.values())) for vec in vectors]

    scores = []
    for hyp, refs in zip(hypotheses, references):
        hyp_vecs, hyp_norms = tfidf(hyp)
        total = 0.0
        for ref in refs:
            ref_vecs, ref_norms = tfidf(ref)
            penalty = math.exp(-((len(hyp) - len(ref)) ** 2) / (2 * sigma ** 2))
            for hv, rv, hn, rn in zip(hyp_vecs, ref_vecs, hyp_norms, ref_norms):
                overlap = sum(min(w, rv.get(g, 0.0)) * rv.get(g, 0.0) for g, w in hv.items())
                total += penalty * (overlap / (hn * rn) if hn and rn else overlap)
        scores.append(10.0 * total / max_n / len(refs))
    return float(np.mean(scores)) if scores else 0.0


def longest_common_subsequence(a: Sequence, b: Sequence) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
            beta: float = 1.2) -> float:
    """ROUGE-L (0..1) as the COCO caption evaluation computes it: per item, the F-measure (recall weighted by beta)
    of the best precision and the best recall of the longest common subsequence over its references; the mean."""
    _check_pairs(hypotheses, references)
    scores = []
    for hyp, refs in zip(hypotheses, references):
        common = [longest_common_subsequence(r, hyp) for r in refs]
        precision = max((c / len(hyp) if hyp else 0.0) for c in common)
        recall = max((c / len(r) if r else 0.0) for c, r in zip(common, refs))
        scores.append((1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)
                      if precision and recall else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def error_rate(hypotheses: Sequence[Sequence], references: Sequence[Sequence]) -> float:
    """Corpus error rate in % : total edits / total reference units (words for WER, characters for CER)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    units = sum(len(r) for r in references)
    if units == 0:
        raise ValueError("the references are all empty: an error rate needs reference words")
    return 100.0 * sum(edit_distance(h, r) for h, r in zip(hypotheses, references)) / units


def characters(words: Sequence[str], lang: str = "en") -> List[str]:
    """CER units: the characters of the words, with one space between words except in Chinese."""
    return list(("" if is_chinese(lang) else " ").join(words))


def text_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]], langs: Sequence[str],
                 chinese: str = "jieba") -> Dict[str, float]:
    """BLEU-1..4, CIDEr-D and ROUGE-L against every reference (x100 for BLEU and ROUGE-L), WER and CER against the
    first (the item's own text)."""
    hyp = [scoring_words(p, lang, chinese) for p, lang in zip(predictions, langs)]
    refs = [[scoring_words(r, lang, chinese) for r in rs] for rs, lang in zip(references, langs)]
    out = {f"BLEU-{n}": 100.0 * s for n, s in enumerate(bleu(hyp, refs), 1)}
    out["CIDEr"] = cider_d(hyp, refs)
    out["ROUGE-L"] = 100.0 * rouge_l(hyp, refs)
    out["WER"] = error_rate(hyp, [r[0] for r in refs])
    out["CER"] = error_rate([characters(h, lang) for h, lang in zip(hyp, langs)],
                            [characters(r[0], lang) for r, lang in zip(refs, langs)])
    return out


def _check_pairs(hypotheses, references) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    empty = [i for i, refs in enumerate(references) if not refs]
    if empty:
        raise ValueError(f"{len(empty)} items have no reference (first: item {empty[0]})")
