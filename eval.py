"""Evaluate a trained checkpoint.

    python eval.py --task retrieval --ckpt runs/demo/retrieval            # R@1/5/10 and median rank, every direction
    python eval.py --task probe --ckpt runs/demo/pretrain                 # linear-probe mAP per input combination

--ckpt is a checkpoint file or a run directory (its newest checkpoint). The model config is the run's config.yaml
unless --config names another; --data evaluates a set prepared elsewhere (prepare it with --like the training set).
Results are printed as a table and written as JSON (default: next to the checkpoint).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.config import ConfigError, load_config
from src.data.records import DatasetError
from src.train.checkpoint import CheckpointError

TASKS = ("retrieval", "probe")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--ckpt", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the run's "
                                                  "config.yaml)")
    p.add_argument("--data", default=None, help="a prepared dataset (default: the config's data.path)")
    p.add_argument("--split", default=None, help="the split to evaluate (default: the config's data.eval_split)")
    p.add_argument("--train-split", default=None, help="probe: the split the linear layer trains on "
                                                       "(default: data.train_split)")
    p.add_argument("--full", action="store_true", help="retrieval: also rank with the all-pairs cross-encoder (slow)")
    p.add_argument("--out", default=None, help="where to write the JSON results")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    return p.parse_args(argv)


def run_config_path(ckpt: str, config: str = None) -> str:
    if config:
        return config
    ckpt = Path(ckpt)
    found = (ckpt if ckpt.is_dir() else ckpt.parent) / "config.yaml"
    if not found.is_file():
        raise ConfigError(f"{found} not found: pass --config with the recipe {ckpt} was trained with")
    return str(found)


def evaluate(args) -> dict:
    import mindspore as ms
    from src.infer.items import load_items
    from src.tasks.retrieval import load_trained
    from src.train.checkpoint import resolve_checkpoint

    overrides = list(args.set) + ([f"data.path={args.data}"] if args.data else [])
    cfg = load_config(run_config_path(args.ckpt, args.config), overrides)
    ckpt = resolve_checkpoint(args.ckpt)
    ms.set_context(mode=ms.GRAPH_MODE)
    model, data = load_trained(cfg, ckpt, ("net.", "match_head.", "projections.") if args.task == "retrieval"
                               else ("net.",))
    split = args.split or cfg.data.eval_split
    items = load_items(data, cfg.data, split)
    report = {"task": args.task, "checkpoint": str(ckpt), "data": str(cfg.data.path), "split": split,
              "items": len(items)}
    if args.task == "retrieval":
        from src.tasks.retrieval_eval import RetrievalEvaluator, retrieval_table
        evaluator = RetrievalEvaluator(model, items, cfg.eval)
        report["embedding_seconds"] = evaluator.embedding_seconds
        report["directions"] = {}
        for direction in cfg.eval.directions:
            r = report["directions"][direction] = evaluator.evaluate(direction, full=args.full)
            print(f"{direction}: R@1 {r['two_stage']['R@1']:.1f} ({r['seconds']:.0f} s)", flush=True)
        table = retrieval_table(report["directions"])
    else:
        from src.tasks.classify import evaluate_probe, probe_table
        train_split = args.train_split or cfg.data.train_split
        train = load_items(data, cfg.data, train_split, limit=cfg.eval.probe_train_samples)
        report.update(train_split=train_split, train_items=len(train))
        report["inputs"] = evaluate_probe(model.net, train, items, cfg.eval)
        table = probe_table(report["inputs"])
    print(f"{args.task} on {cfg.data.path} [{split}], {len(items)} items, checkpoint {ckpt}")
    print("\n".join(table))
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(args)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from src.data.records import write_json_atomic
    out = Path(args.out) if args.out else Path(report["checkpoint"]).parent / f"eval_{args.task}_{report['split']}.json"
    write_json_atomic(out, report)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
