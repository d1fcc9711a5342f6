"""Retrieval evaluation in every direction: two-stage ranking (cosine of pooled embeddings, then the cross-encoder
reranks each query's top k), with the all-pairs cross-encoder available for comparison.

A direction names query and candidate modalities, e.g. "text+audio->image". A combined side is embedded as the
normalised sum of its modalities' embeddings. The correct candidates of a query are its own item and every item with
the same content (`correct_candidates`): another caption of the same image counts, as does a duplicate caption.
"""
from __future__ import annotations

import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
from src.config import ConfigError, EvalConfig
from src.infer.graphs import match_graph
from src.infer.items import Items, content_codes, load_items, modalities_of, run_batched
from src.infer.retrieval import first_stage, full_ranks, normalise, rerank
from src.metrics.retrieval import chance_recall, recall_summary
from src.modality import MODALITIES


def parse_direction(name: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """'text+audio->image' -> (('text', 'audio'), ('image',))."""
    sides = name.split("->")
    if len(sides) != 2:
        raise ConfigError(f"eval.directions: '{name}' must look like query->candidate, e.g. text+audio->image")
    query, cand = (tuple(s.strip() for s in side.split("+")) for side in sides)
    for m in query + cand:
        if m not in MODALITIES:
            raise ConfigError(f"eval.directions: '{name}' names '{m}' (modalities: {', '.join(MODALITIES)})")
    if set(query) & set(cand):
        raise ConfigError(f"eval.directions: '{name}' has a modality on both sides")
    return query, cand


def correct_candidates(items: Items, query: Sequence[str], cand: Sequence[str]) -> np.ndarray:
    """[N, N] bool: item c is a correct answer to the query of item q when it shows the same content: its candidate
    side equals q's (the same image, caption or recording), or its query side equals q's (c's candidate belongs to
    the same input as q's own: the other caption of q's image for image->text, a recording of q's caption for
    text->audio)."""
    same_cand, same_query = (content_codes(items, side) for side in (cand, query))
    return (same_cand[:, None] == same_cand[None, :]) | (same_query[:, None] == same_query[None, :])


def side_embedding(embeddings: Dict[str, np.ndarray], modalities: Sequence[str], rows: np.ndarray) -> np.ndarray:
    """A query or candidate side: the normalised sum of its modalities' embeddings."""
    return normalise(sum(embeddings[m][rows] for m in modalities))


class RetrievalEvaluator:
    """Embeds the items once, then ranks candidates for any direction, with the `embed` and `match_<modalities>`
    cells of `graphs` (a checkpoint's or an export's, src/infer/graphs.py). With `baseline` (modality -> embeddings of
    the items, e.g. `src.tasks.linear_retrieval.frozen_feature_embeddings`) each direction also reports the recall of
    its cosine ranking.

    With `metrics_only` (evaluation) the cross-encoder scores what the metrics read, once: only queries with a correct
    candidate in their top k are reranked (`rerank`), and a pair of inputs already scored (the same image asked by two
    of its captions, a pair shared by image->text and text->image) is not scored again. Off, every query's top k is
    scored as a search would (bench/bench_retrieval.py times that)."""

    def __init__(self, graphs, items: Items, cfg: EvalConfig, baseline: Dict[str, np.ndarray] = None,
                 metrics_only: bool = True):
        self.graphs, self.items, self.cfg, self.baseline = graphs, items, cfg, baseline
        self.metrics_only = metrics_only
        self.codes = {m: content_codes(items, (m,)) for m in MODALITIES} if metrics_only else None
        self.scored: Dict[tuple, Dict[tuple, float]] = {}  # modalities -> content codes of a pair -> score
        started = time.perf_counter()
        embedded = run_batched(graphs["embed"], len(items), cfg.batch_size, lambda rows: items.compose({"text": rows}))
        self.embedding_seconds = time.perf_counter() - started
        self.embeddings = dict(zip(MODALITIES, embedded))
        self.present = items.present()

    def pair_scorer(self, query: Sequence[str], cand: Sequence[str], query_rows: np.ndarray, cand_rows: np.ndarray):
        """score_pairs(q, c) for `two_stage_ranks`: q, c index query_rows / cand_rows."""
        shown = modalities_of(query + cand)
        cell = self.graphs[match_graph(shown)]

        def run(sources: Dict[str, np.ndarray]) -> np.ndarray:
            return run_batched(cell, len(next(iter(sources.values()))), self.cfg.batch_size,
                               lambda rows: self.items.compose({m: r[rows] for m, r in sources.items()}))[0]

        def score_pairs(q: np.ndarray, c: np.ndarray) -> np.ndarray:
            sources = {**{m: query_rows[q] for m in query}, **{m: cand_rows[c] for m in cand}}
            if not self.metrics_only:
                return run(sources)
            keys = np.stack([self.codes[m][sources[m]] for m in shown], axis=1)
            distinct, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
            known = self.scored.setdefault(shown, {})
            new = [i for i, key in enumerate(map(tuple, distinct)) if key not in known]
            if new:
                rows = first[new]
                for i, score in zip(new, run({m: r[rows] for m, r in sources.items()})):
                    known[tuple(distinct[i])] = float(score)
            return np.array([known[tuple(key)] for key in distinct], np.float32)[inverse.reshape(-1)]
        return score_pairs

    def evaluate(self, name: str, full: bool = False, max_queries: int = 0) -> dict:
        """Metrics of one direction over the items that have all its modalities (queries: the first `max_queries`
        of them when > 0; the gallery is always all of them)."""
        query, cand = parse_direction(name)
        needed = [MODALITIES.index(m) for m in query + cand]
        rows = np.flatnonzero(self.present[:, needed].all(1))
        if len(rows) < 2:
            raise ConfigError(f"{name}: {len(rows)} items have {' and '.join(query + cand)}; need at least 2")
        query_rows = rows[:max_queries] if max_queries > 0 else rows
        positives = correct_candidates(self.items.subset(rows), query, cand)[:len(query_rows)]
        queries, candidates = (side_embedding(self.embeddings, query, query_rows),
                               side_embedding(self.embeddings, cand, rows))
        score_pairs = self.pair_scorer(query, cand, query_rows, rows)
        k = min(self.cfg.rerank_k, len(rows))
        started = time.perf_counter()
        top, first = first_stage(queries, candidates, positives, k)
        cosines = np.einsum("qd,qkd->qk", queries, candidates[top]) if self.cfg.rerank_fusion else None
        ranks = rerank(top, first, positives, score_pairs, cosines, self.cfg.rerank_fusion,
                       all_queries=not self.metrics_only)
        out = {"queries": int(len(query_rows)), "candidates": int(len(rows)), "rerank_k": k,
               "two_stage": recall_summary(ranks), "first_stage": recall_summary(first),
               "chance": chance_recall(len(rows), positives.sum(1)), "seconds": time.perf_counter() - started}
        if self.baseline is not None:
            _, base = first_stage(side_embedding(self.baseline, query, query_rows),
                                  side_embedding(self.baseline, cand, rows), positives, 1)
            out["baseline"] = recall_summary(base)
        if full:
            started = time.perf_counter()
            out["full"] = recall_summary(full_ranks(len(query_rows), len(rows), positives, score_pairs))
            out["full_seconds"] = time.perf_counter() - started
        return out


def retrieval_table(results: Dict[str, dict]) -> List[str]:
    """Rows of the printed results table: two-stage, first stage, the frozen-feature baseline (when evaluated) and
    chance."""
    with_baseline = all("baseline" in r for r in results.values())
    head = f"{'direction':<20} {'items':>5} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MedR':>6} | {'1st R@1':>7} " \
           f"{'1st R@10':>8} | " + (f"{'frozen R@1':>10} {'R@10':>6} | " if with_baseline else "") + \
           f"{'chance R@1':>10} {'R@10':>6} {'MedR':>6}"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        t, f, c = r["two_stage"], r["first_stage"], r["chance"]
        base = f"{r['baseline']['R@1']:>10.1f} {r['baseline']['R@10']:>6.1f} | " if with_baseline else ""
        lines.append(f"{name:<20} {r['candidates']:>5} {t['R@1']:>6.1f} {t['R@5']:>6.1f} {t['R@10']:>6.1f} "
                     f"{t['median_rank']:>6.1f} | {f['R@1']:>7.1f} {f['R@10']:>8.1f} | {base}{c['R@1']:>10.1f} "
                     f"{c['R@10']:>6.1f} {c['median_rank']:>6.1f}")
    return lines


def evaluate_run(run) -> List[str]:
    """eval.py --task retrieval: every direction of cfg.eval.directions, beside the frozen-feature baseline when
    eval.baseline_text names one."""
    started = time.perf_counter()
    cfg, data = run.cfg, run.data()
    items = load_items(data, cfg.data, run.split)
    run.report["items"] = len(items)
    baseline = None
    if cfg.eval.baseline_text:
        from src.tasks.linear_retrieval import frozen_feature_embeddings
        train = load_items(data, cfg.data, run.args.train_split or cfg.data.train_split)
        baseline = frozen_feature_embeddings(cfg, data, train, items)
    evaluator = RetrievalEvaluator(run.graphs, items, cfg.eval, baseline)
    run.report["embedding_seconds"] = evaluator.embedding_seconds
    directions = run.report["directions"] = {}
    for direction in cfg.eval.directions:
        r = directions[direction] = evaluator.evaluate(direction, full=run.args.full)
        run.log(f"{direction}: R@1 {r['two_stage']['R@1']:.1f} ({r['seconds']:.0f} s)")
    run.report["seconds"] = time.perf_counter() - started
    run.log(f"{len(directions)} directions in {run.report['seconds']:.0f} s (embedding the split "
            f"{evaluator.embedding_seconds:.0f} s)")
    return retrieval_table(directions)
