"""Export a trained network for deployment: MINDIR graphs (AIR with --format AIR, on Ascend) with a dynamic batch
dimension and a JSON sidecar naming their inputs, outputs and the tokenizer.

    python export.py --task retrieval --ckpt runs/demo/retrieval --out exports/retrieval
    python export.py --task caption --ckpt runs/demo/caption --out exports/caption [--set generate.strategy=greedy]
    python export.py --task pretrain --ckpt runs/demo/pretrain --out exports/pretrain
    python export.py --task t2i --ckpt runs/demo/pretrain --out exports/t2i [--set t2i.top_k=16]

writes exports/<task>.<graph>.mindir, exports/<task>.vocab.txt and exports/<task>.json (what each graph takes and
returns: src/infer/export.py). Every graph is loaded back and checked against the network before the command ends.
Run them with `eval.py --mindir exports/<task>.json`, `infer.py --mindir exports/caption.json --image x.png` or
`infer.py --mindir exports/t2i.json --text "a caption" --out x.png`.
"""
from __future__ import annotations

import argparse
import sys

from src.config import ConfigError
from src.data.records import DatasetError
from src.train.checkpoint import CheckpointError


def parse_args(argv=None):
    from src.infer.export import FORMATS, TASKS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--ckpt", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--out", required=True, help="file prefix: PREFIX.<graph>.mindir and PREFIX.json are written")
    p.add_argument("--format", default="MINDIR", choices=list(FORMATS))
    p.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the run's "
                                                  "config.yaml)")
    p.add_argument("--data", default=None, help="a prepared dataset (default: the config's data.path)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mindspore as ms
    from src.infer.export import ExportError, export_task
    from src.train.checkpoint import load_run_config, resolve_checkpoint
    try:
        overrides = list(args.set) + ([f"data.path={args.data}"] if args.data else [])
        cfg = load_run_config(args.ckpt, args.config, overrides)
        ms.set_context(mode=ms.GRAPH_MODE)
        sidecar = export_task(cfg, resolve_checkpoint(args.ckpt), args.task, args.out, args.format)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"sidecar: {sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
