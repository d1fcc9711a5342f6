"""Evaluate a trained checkpoint.

    python eval.py --task retrieval --ckpt runs/demo/retrieval            # R@1/5/10 and median rank, every direction
    python eval.py --task probe --ckpt runs/demo/pretrain                 # linear-probe mAP per input combination
    python eval.py --task caption --ckpt runs/demo/caption                # image -> text: BLEU, CIDEr-D, WER, CER
    python eval.py --task asr --ckpt runs/demo/caption                    # audio -> text
    python eval.py --task caption_ia --ckpt runs/demo/caption             # image+audio -> text
    python eval.py --task retrieval --mindir exports/retrieval.json       # the same, on graphs export.py wrote
    python eval.py --task dvae --ckpt runs/demo/dvae                      # reconstruction PSNR vs mean colour
    python eval.py --task t2i --ckpt runs/demo/pretrain                   # text -> image: PNGs, sheet, R-precision

--ckpt is a checkpoint file or a run directory (its newest checkpoint). The model config is the run's config.yaml
unless --config names another; --data evaluates a set prepared elsewhere (prepare it with --like the training set).
Results are printed as a table and written as JSON (default: next to the checkpoint); text generation also writes
every prediction with its references (predictions_<task>_<split>.json). Decoding settings come from the config's
`generate` section (e.g. --set generate.strategy=greedy), text-to-image's from `t2i` (e.g. --set t2i.top_k=32
t2i.scorer=runs/demo/retrieval); it decodes with the dVAE the pre-training's codes came from (dvae.checkpoint).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.config import ConfigError
from src.data.records import DatasetError, open_prepared
from src.train.checkpoint import CheckpointError

TASKS = ("retrieval", "probe", "caption", "asr", "caption_ia", "dvae", "t2i")
EXPORT_OF = {"retrieval": "retrieval", "probe": "pretrain", "caption": "caption", "asr": "caption",
             "caption_ia": "caption", "t2i": "t2i"}  # the export.py task whose graphs each evaluation runs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--ckpt", default=None, help="a checkpoint file or a run directory")
    p.add_argument("--mindir", default=None, help="instead of --ckpt: the sidecar (PREFIX.json) of export.py's graphs; "
                                                  "they run in place of the Python network")
    p.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the run's "
                                                  "config.yaml)")
    p.add_argument("--data", default=None, help="a prepared dataset (default: the config's data.path)")
    p.add_argument("--split", default=None, help="the split to evaluate (default: the config's data.eval_split)")
    p.add_argument("--train-split", default=None, help="probe: the split the linear layer trains on "
                                                       "(default: data.train_split)")
    p.add_argument("--full", action="store_true", help="retrieval: also rank with the all-pairs cross-encoder (slow)")
    p.add_argument("--limit", type=int, default=0, help="text generation, dvae, t2i: only the first N items")
    p.add_argument("--out", default=None, help="where to write the JSON results")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    args = p.parse_args(argv)
    if (args.ckpt is None) == (args.mindir is None):
        p.error("give one of --ckpt and --mindir")
    return args


def evaluate(args) -> dict:
    import mindspore as ms
    from src.train.checkpoint import load_run_config, resolve_checkpoint

    overrides = list(args.set) + ([f"data.path={args.data}"] if args.data else [])
    ms.set_context(mode=ms.GRAPH_MODE)
    graphs = ckpt = None
    if args.mindir:
        from src.infer.export import ExportedGraphs
        graphs = ExportedGraphs(args.mindir)
        if args.task not in EXPORT_OF:
            raise ConfigError(f"eval.py --task {args.task} runs the Python network only (no --mindir)")
        graphs.require(EXPORT_OF[args.task], f"eval.py --task {args.task}")
        cfg = graphs.config(overrides)
        source = {"mindir": str(graphs.path)}
    else:
        cfg = load_run_config(args.ckpt, args.config, overrides)
        ckpt = resolve_checkpoint(args.ckpt)
        source = {"checkpoint": str(ckpt)}
    split = args.split or cfg.data.eval_split
    report = {"task": args.task, **source, "data": str(cfg.data.path), "split": split}
    if args.task in ("retrieval", "probe"):
        table = evaluate_understanding(args, cfg, ckpt, split, report, graphs)
    elif args.task == "dvae":
        from src.tasks.dvae import evaluate_reconstruction, load_trained, reconstruction_table
        model, data = load_trained(cfg, ckpt)
        report.update(evaluate_reconstruction(model, data, cfg, split, args.limit, out_dir=Path(ckpt).parent))
        table = reconstruction_table(report)
    elif args.task == "t2i":
        table = evaluate_t2i(cfg, ckpt, split, args.limit, report, graphs)
    else:
        from src.tasks.caption import load_trained
        from src.tasks.caption_eval import evaluate_generation, generation_table
        model, data = load_trained(cfg, ckpt) if graphs is None else (None, open_prepared(cfg.data.path))
        report.update(evaluate_generation(model, data, cfg, args.task, split, args.limit, graphs=graphs))
        table = generation_table(report)
    print(f"{args.task} on {cfg.data.path} [{split}], {report['items']} items, {' '.join(*source.items())}")
    print("\n".join(table))
    return report


def evaluate_understanding(args, cfg, ckpt, split: str, report: dict, graphs=None):
    """Retrieval or the linear probe: fills `report`, returns the printed table."""
    from src.infer.items import load_items
    from src.tasks.retrieval import load_trained
    if graphs is not None:
        model, data = None, open_prepared(cfg.data.path)
    else:
        model, data = load_trained(cfg, ckpt, ("net.", "match_head.", "projections.") if args.task == "retrieval"
                                   else ("net.",))
    items = load_items(data, cfg.data, split)
    report["items"] = len(items)
    if args.task == "retrieval":
        from src.tasks.retrieval_eval import RetrievalEvaluator, retrieval_table
        baseline = None
        if cfg.eval.baseline_text:
            from src.tasks.linear_retrieval import frozen_feature_embeddings
            train = load_items(data, cfg.data, args.train_split or cfg.data.train_split)
            baseline = frozen_feature_embeddings(cfg, data, train, items)
        evaluator = RetrievalEvaluator(model, items, cfg.eval, graphs, baseline)
        report["embedding_seconds"] = evaluator.embedding_seconds
        report["directions"] = {}
        for direction in cfg.eval.directions:
            r = report["directions"][direction] = evaluator.evaluate(direction, full=args.full)
            print(f"{direction}: R@1 {r['two_stage']['R@1']:.1f} ({r['seconds']:.0f} s)", flush=True)
        return retrieval_table(report["directions"])
    from src.tasks.classify import evaluate_probe, probe_table
    train_split = args.train_split or cfg.data.train_split
    train = load_items(data, cfg.data, train_split).sample(cfg.eval.probe_train_samples, cfg.train.seed)
    report.update(train_split=train_split, train_items=len(train))
    report["inputs"] = evaluate_probe(model.net if model is not None else None, train, items, cfg.eval,
                                      graphs=graphs)
    return probe_table(report["inputs"])


def evaluate_t2i(cfg, ckpt, split: str, limit: int, report: dict, graphs=None):
    """Text-to-image: fills `report`, returns the printed table. With `graphs` (a t2i export) its graphs generate
    and the exported checkpoint scores (unless t2i.scorer names another, e.g. a retrieval run)."""
    from src.tasks.text_to_image import evaluate_text_to_image, input_set, load_generator, load_scorer, t2i_table
    generate, data = load_generator(cfg, input_set(cfg), ckpt, graphs)
    if graphs is not None:
        ckpt, out_dir = graphs.meta["checkpoint"], graphs.path.parent
    else:
        out_dir = Path(ckpt).parent
    report.update(evaluate_text_to_image(generate, load_scorer(cfg, ckpt), data, cfg, split, limit, out_dir))
    print(f"contact sheet: {report['sheet']}")
    return t2i_table(report)


def main(argv=None) -> int:
    args = parse_args(argv)
    from src.infer.export import ExportError
    try:
        report = evaluate(args)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from src.data.records import write_json_atomic
    beside = Path(report.get("checkpoint") or report["mindir"]).parent
    out = Path(args.out) if args.out else beside / f"eval_{args.task}_{report['split']}.json"
    predictions = report.pop("predictions", None)
    if predictions is not None:
        listing = out.with_name(f"predictions_{args.task}_{report['split']}.json")
        write_json_atomic(listing, predictions)
        report["predictions_file"] = str(listing)
        print(f"predictions: {listing}")
    write_json_atomic(out, report)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
