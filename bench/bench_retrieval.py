"""Two-stage retrieval against the all-pairs cross-encoder on one gallery: time and recall side by side.

    python bench/bench_retrieval.py --ckpt runs/demo/retrieval --split train --gallery 1000 --queries 50

Both methods rank the same `--queries` queries against the whole gallery (the all-pairs cross-encoder scores
queries x gallery pairs, so it is timed on a subset); the two-stage method is also timed on every query of the
gallery. Times exclude graph compilation (each network is warmed up first).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402

from src.commands import add_set_arg  # noqa: E402
from src.data.records import write_json_atomic  # noqa: E402
from src.infer.items import load_items  # noqa: E402
from src.tasks.retrieval import load_trained  # noqa: E402
from src.tasks.retrieval_eval import RetrievalEvaluator  # noqa: E402
from src.train.checkpoint import load_run_config, resolve_checkpoint  # noqa: E402


def print_result(result: dict, title: str, q: int, every: dict, embedding_seconds: float) -> None:
    print(title)
    for name in ("two_stage", "full"):
        r = result[name]
        print(f"  {name:<10} R@1 {r['R@1']:5.1f}  R@5 {r['R@5']:5.1f}  R@10 {r['R@10']:5.1f}  "
              f"{r['seconds']:8.1f} s  ({r['seconds'] / q * 1000:.0f} ms/query)")
    print(f"  speedup {result['speedup']:.1f}x; all {every['queries']} queries two-stage: {every['seconds']:.1f} s "
          f"(all-pairs estimated {result['full_all_queries_seconds_estimated']:.0f} s); "
          f"embedding the gallery: {embedding_seconds:.1f} s; speedup with the embedding: "
          f"{result['speedup_all_queries_with_embedding']:.1f}x")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--config", default=None)
    p.add_argument("--split", default="train")
    p.add_argument("--gallery", type=int, default=1000)
    p.add_argument("--queries", type=int, default=50, help="queries ranked by both methods")
    p.add_argument("--direction", default="image->text")
    add_set_arg(p)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_run_config(args.ckpt, args.config, args.set)
    model, data = load_trained(cfg, resolve_checkpoint(args.ckpt))
    items = load_items(data, cfg.data, args.split, limit=args.gallery)
    evaluator = RetrievalEvaluator(model, items, cfg.eval, metrics_only=False)  # time the search itself
    evaluator.evaluate(args.direction, max_queries=1)  # compile the scorer outside the timings
    both = evaluator.evaluate(args.direction, full=True, max_queries=args.queries)
    every = evaluator.evaluate(args.direction)
    q, n = both["queries"], both["candidates"]
    result = {
        "direction": args.direction, "gallery": n, "queries_compared": q, "rerank_k": both["rerank_k"],
        "embedding_seconds": evaluator.embedding_seconds,
        "two_stage": {**both["two_stage"], "seconds": both["seconds"]},
        "full": {**both["full"], "seconds": both["full_seconds"]},
        "speedup": both["full_seconds"] / both["seconds"],
        "two_stage_all_queries": {**every["two_stage"], "queries": every["queries"], "seconds": every["seconds"]},
        "full_all_queries_seconds_estimated": both["full_seconds"] * n / q,
    }
    result["speedup_all_queries_with_embedding"] = result["full_all_queries_seconds_estimated"] / (
        every["seconds"] + evaluator.embedding_seconds)
    print_result(result, f"{args.direction}, gallery {n}, k {both['rerank_k']}, {q} queries ranked by both:", q,
                 every, evaluator.embedding_seconds)
    if args.json:
        write_json_atomic(Path(args.json), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
