"""Evaluate a trained checkpoint (or its export): every task registered in src/tasks/ that evaluates.

    python eval.py --task retrieval --ckpt runs/demo/retrieval            # R@1/5/10 and median rank, every direction
    python eval.py --task probe --ckpt runs/demo/pretrain                 # linear-probe mAP per input combination
    python eval.py --task caption --ckpt runs/demo/caption                # image -> text: BLEU, CIDEr-D, WER, CER
    python eval.py --task asr --ckpt runs/demo/caption                    # audio -> text
    python eval.py --task caption_ia --ckpt runs/demo/caption             # image+audio -> text
    python eval.py --task retrieval --mindir exports/retrieval            # the same, on the bundle export.py wrote
    python eval.py --task dvae --ckpt runs/demo/dvae                      # reconstruction PSNR vs mean colour
    python eval.py --task t2i --ckpt runs/demo/pretrain                   # text -> image: PNGs, sheet, R-precision

    python eval.py --task TASK (--ckpt RUN | --mindir SIDECAR) [--config RECIPE.yaml] [--data PREPARED]
                   [--split NAME] [--train-split NAME] [--full] [--limit N] [--out FILE.json] [--set key=value ...]

--ckpt is a checkpoint file or a run directory (its newest checkpoint). The model config is the run's config.yaml
unless --config names another; --data evaluates a set prepared elsewhere (prepare it with --like the training set).
Results are printed as a table and written as JSON (default: next to the checkpoint); text generation also writes
every prediction with its references (predictions_<task>_<split>.json). Decoding settings come from the config's
`generate` section (e.g. --set generate.strategy=greedy), text-to-image's from `t2i` (e.g. --set t2i.top_k=32
t2i.scorer=runs/demo/retrieval); it decodes with the dVAE the pre-training's codes came from (dvae.checkpoint).
"""
from __future__ import annotations

import sys
from pathlib import Path

from src.cli import add_source_args, check_source_args, entry_point, task_parser
from src.compile_cache import enable_compile_cache, graph_options
from src.tasks import registry


def parse_args(argv=None):
    p = task_parser(__doc__, "evaluate")
    add_source_args(p, "trained")
    p.add_argument("--data", default=None, help="a prepared dataset (default: the config's data.path)")
    p.add_argument("--split", default=None, help="the split to evaluate (default: the config's data.eval_split)")
    p.add_argument("--train-split", default=None, help="probe, retrieval's baseline: the split they fit on "
                                                       "(default: data.train_split)")
    p.add_argument("--limit", type=int, default=0, help="text generation, dvae, t2i: only the first N items")
    p.add_argument("--out", default=None, help="where to write the JSON results")
    args = p.parse_args(argv)
    check_source_args(p, args)
    return args


def evaluate(args) -> dict:
    """Run the task's evaluation on the checkpoint's (or the export's) cells; returns the report."""
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    task = registry.get(args.task, "evaluate")
    overrides = list(args.set) + ([f"data.path={args.data}"] if args.data else [])
    cfg, graphs = registry.open_graphs(task, args.ckpt, args.mindir, args.config, overrides,
                                       needed_by=f"eval.py --task {args.task}")
    enable_compile_cache("eval", cfg, graph_options(args, ignored=("out",)))
    split = args.split or cfg.data.eval_split
    run = registry.EvalRun(args.task, args, cfg, split, graphs,
                           {"task": args.task, **graphs.source, "data": str(cfg.data.path), "split": split},
                           log=lambda line: print(line, flush=True))
    table = task.evaluate(run)
    report = run.report
    print(f"{args.task} on {cfg.data.path} [{split}], {report['items']} items, {' '.join(*graphs.source.items())}")
    print("\n".join(table))
    return report


def write_report(args, report: dict) -> None:
    """The results JSON (default: beside the checkpoint or the export) and, for text generation, every prediction."""
    from src.data.records import write_json_atomic
    beside = Path(report.get("checkpoint") or report["mindir"]).parent
    out = Path(args.out) if args.out else beside / f"eval_{args.task}_{report['split']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions = report.pop("predictions", None)
    if predictions is not None:
        listing = out.with_name(f"predictions_{args.task}_{report['split']}.json")
        write_json_atomic(listing, predictions)
        report["predictions_file"] = str(listing)
        print(f"predictions: {listing}")
    write_json_atomic(out, report)
    print(f"results: {out}")


main = entry_point(parse_args, lambda args: write_report(args, evaluate(args)))


if __name__ == "__main__":
    sys.exit(main())
