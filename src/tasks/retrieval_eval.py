"""Retrieval evaluation in every direction: two-stage ranking (cosine of pooled embeddings, then the cross-encoder
reranks each query's top k), with the all-pairs cross-encoder available for comparison.

A direction names query and candidate modalities, e.g. "text+audio->image". A combined side is embedded as the
normalised sum of its modalities' embeddings. The correct candidates of a query are its own item and every item with
the same content (`correct_candidates`): another caption of the same image counts, as does a duplicate caption.
"""
from __future__ import annotations

import itertools
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
from src.config import ConfigError, EvalConfig
from src.infer.graphs import match_graph
from src.infer.items import Items, content_codes, load_items, modalities_of, run_batched
from src.infer.retrieval import first_stage, full_ranks, normalise, rerank
from src.metrics.retrieval import chance_recall, recall_summary
from src.modality import MODALITIES, PAPER_MODALITIES, parse_input_set


# every direction the default evaluation runs where the data has its modalities: the paper's, then both ways between
# a further modality (src/modality.py) and each other
DIRECTIONS = ("image->text", "text->image", "text->audio", "audio->text", "image->audio", "audio->image",
              "text+audio->image", "image+audio->text") + tuple(
    f"{query}->{candidate}" for query, candidate in itertools.permutations(MODALITIES, 2)
    if query not in PAPER_MODALITIES or candidate not in PAPER_MODALITIES)
# the pair of directions papers report R@1/5/10 and RSUM for (COCO 5K / 1K, Flickr30k 1K)
PUBLISHED = ("image->text", "text->image")


def parse_direction(name: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """'text+audio->image' -> (('text', 'audio'), ('image',))."""
    sides = name.split("->")
    if len(sides) != 2:
        raise ConfigError(f"eval.directions: '{name}' must look like query->candidate, e.g. text+audio->image")
    try:
        query, cand = (parse_input_set(side, f"eval.directions: '{name}'") for side in sides)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if set(query) & set(cand):
        raise ConfigError(f"eval.directions: '{name}' has a modality on both sides")
    return query, cand


def directions_for(requested: Sequence[str], present: Sequence[str], where: str) -> List[str]:
    """eval.directions as asked, each checked against the modalities `present` in the evaluated split (one line
    naming what is missing), or, when none is asked, every direction of DIRECTIONS the split supports."""
    if not requested:
        return [d for d in DIRECTIONS if set(sum(parse_direction(d), ())) <= set(present)]
    for name in requested:
        missing = [m for m in sum(parse_direction(name), ()) if m not in present]
        if missing:
            raise ConfigError(f"eval.directions: '{name}' needs {' and '.join(missing)}, which {where} does not have "
                              f"(it has: {', '.join(present)}); leave eval.directions empty for every direction the "
                              "data supports")
    return list(requested)


def correct_candidates(query_codes: Tuple[np.ndarray, np.ndarray], cand_codes: Tuple[np.ndarray, np.ndarray]
                       ) -> np.ndarray:
    """[Q, C] bool from the (query-side, candidate-side) content codes of the query items and of the candidate items:
    candidate c answers query q when it shows the same content: its candidate side equals q's (the same image,
    caption or recording), or its query side equals q's (c's candidate belongs to the same input as q's own: another
    caption of q's image for image->text, a recording of q's caption for text->audio)."""
    (q_query, q_cand), (c_query, c_cand) = query_codes, cand_codes
    return (q_cand[:, None] == c_cand[None, :]) | (q_query[:, None] == c_query[None, :])


def distinct_rows(rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The first of `rows` with each distinct code, in order: a query or a gallery holds each input once (an image
    with five captions is one candidate, not five)."""
    _, first = np.unique(codes[rows], return_index=True)
    return rows[np.sort(first)]


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
        self.codes = {m: content_codes(items, (m,)) for m in MODALITIES}  # equal for identical inputs
        self.scored: Dict[tuple, Dict[tuple, float]] = {}  # modalities -> content codes of a pair -> score
        started = time.perf_counter()
        embedded = run_batched(graphs["embed"], len(items), cfg.batch_size, lambda rows: items.compose({"text": rows}))
        self.embedding_seconds = time.perf_counter() - started
        self.embeddings = dict(zip(MODALITIES, embedded))
        self.present = items.present()

    def side_codes(self, modalities: Sequence[str]) -> np.ndarray:
        """[N] int: equal for items whose inputs of all `modalities` are identical."""
        stacked = np.stack([self.codes[m] for m in modalities], axis=1)
        return np.unique(stacked, axis=0, return_inverse=True)[1].reshape(-1)

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

    def evaluate(self, name: str, full: bool = False, max_queries: int = 0, within: np.ndarray = None) -> dict:
        """Metrics of one direction over the items that have all its modalities (or those of them among the item
        rows `within`): each distinct query input asks once (the first `max_queries` of them when > 0), and the
        gallery holds each distinct candidate input once."""
        query, cand = parse_direction(name)
        needed = [MODALITIES.index(m) for m in query + cand]
        has = self.present[:, needed].all(1)
        rows = np.flatnonzero(has) if within is None else np.sort(within[has[within]])
        side_codes = [self.side_codes(side) for side in (query, cand)]
        query_rows, cand_rows = (distinct_rows(rows, codes) for codes in side_codes)
        if len(cand_rows) < 2:
            raise ConfigError(f"{name}: {len(cand_rows)} distinct {'+'.join(cand)} inputs among the items that have "
                              f"{' and '.join(query + cand)}; need at least 2")
        query_rows = query_rows[:max_queries] if max_queries > 0 else query_rows
        positives = correct_candidates(tuple(c[query_rows] for c in side_codes),
                                       tuple(c[cand_rows] for c in side_codes))
        rows = cand_rows
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


def image_folds(evaluator: RetrievalEvaluator, fold_images: int) -> List[np.ndarray]:
    """Item rows of consecutive folds of `fold_images` distinct images (in split order), each with all their
    captions, when the image-text items hold at least two such folds (COCO 5K: five folds of 1K); else none."""
    rows = np.flatnonzero(evaluator.present[:, [MODALITIES.index("image"), MODALITIES.index("text")]].all(1))
    if fold_images <= 0 or not len(rows):
        return []
    codes = evaluator.codes["image"][rows]
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))[inverse.reshape(-1)]  # each row's image, numbered by first appearance
    folds = len(first) // fold_images
    return [rows[(order >= f * fold_images) & (order < (f + 1) * fold_images)] for f in range(folds)] \
        if folds >= 2 else []


def rsum_row(i2t: dict, t2i: dict) -> dict:
    """image->text and text->image recall in the papers' form, with RSUM = R@1+R@5+R@10 of both."""
    recalls = {d: {k: r[k] for k in ("R@1", "R@5", "R@10")} for d, r in zip(PUBLISHED, (i2t, t2i))}
    return {**recalls, "RSUM": sum(sum(r.values()) for r in recalls.values())}


def published_protocol(evaluator: RetrievalEvaluator, directions: Dict[str, dict], fold_images: int) -> dict:
    """image<->text as papers report it: the whole split ("5K" on COCO's test, "1K" on Flickr30k's) and, when it
    holds several folds of `fold_images` images, the mean over them (COCO 1K). Each image asks once and is one
    candidate; an image is found when any of its captions is (`evaluate`)."""
    i2t, t2i = (directions[d] for d in PUBLISHED)
    out = {"all": {"images": i2t["queries"], "texts": t2i["queries"],
                   **rsum_row(i2t["two_stage"], t2i["two_stage"])}}
    folds = image_folds(evaluator, fold_images)
    if folds:
        rows = [rsum_row(*(evaluator.evaluate(d, within=f)["two_stage"] for d in PUBLISHED)) for f in folds]
        mean = {d: {k: float(np.mean([r[d][k] for r in rows])) for k in ("R@1", "R@5", "R@10")} for d in PUBLISHED}
        out["folds"] = {"count": len(folds), "images": fold_images, **mean,
                        "RSUM": float(np.mean([r["RSUM"] for r in rows]))}
    return out


def protocol_table(protocol: dict) -> List[str]:
    head = f"{'image<->text':<22} {'images':>6} | {'i->t R@1':>8} {'R@5':>5} {'R@10':>5} | {'t->i R@1':>8} " \
           f"{'R@5':>5} {'R@10':>5} | {'RSUM':>6}"
    lines = [head, "-" * len(head)]
    for name, r in protocol.items():
        label = "whole split" if name == "all" else f"mean of {r['count']} folds"
        images = r["images"]
        recalls = " | ".join(f"{r[d]['R@1']:>8.1f} {r[d]['R@5']:>5.1f} {r[d]['R@10']:>5.1f}" for d in PUBLISHED)
        lines.append(f"{label:<22} {images:>6} | {recalls} | {r['RSUM']:>6.1f}")
    return lines


def evaluate_run(run) -> List[str]:
    """eval.py --task retrieval: every direction of cfg.eval.directions (default: every one the split supports),
    beside the frozen-feature baseline when eval.baseline_text names one; image<->text also in the papers' form."""
    started = time.perf_counter()
    cfg, data = run.cfg, run.data()
    items = load_items(data, cfg.data, run.split)
    run.report["items"] = len(items)
    present = data.modalities(run.split)
    names = directions_for(cfg.eval.directions, present, f"split '{run.split}' of {data.root}")
    baseline = None
    training = run.training_data("frozen-feature baseline") if cfg.eval.baseline_text else None
    if training is not None:
        from src.tasks.linear_retrieval import frozen_feature_embeddings
        train_data, train_split = training
        train = load_items(train_data, cfg.data, train_split)
        baseline = frozen_feature_embeddings(cfg, train_data, train, items)
    evaluator = RetrievalEvaluator(run.graphs, items, cfg.eval, baseline)
    run.report["embedding_seconds"] = evaluator.embedding_seconds
    directions = run.report["directions"] = {}
    for direction in names:
        r = directions[direction] = evaluator.evaluate(direction, full=run.args.full)
        run.log(f"{direction}: R@1 {r['two_stage']['R@1']:.1f} ({r['seconds']:.0f} s)")
    table = retrieval_table(directions)
    if all(d in directions for d in PUBLISHED):
        run.report["protocol"] = published_protocol(evaluator, directions, cfg.eval.fold_images)
        table += [""] + protocol_table(run.report["protocol"])
    run.report["seconds"] = time.perf_counter() - started
    run.log(f"{len(directions)} directions in {run.report['seconds']:.0f} s (embedding the split "
            f"{evaluator.embedding_seconds:.0f} s)")
    return table
