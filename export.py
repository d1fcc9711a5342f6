"""Export a trained network for deployment: a bundle, one folder with MINDIR graphs (AIR with --format AIR, on
Ascend) with a dynamic batch dimension, the settings its inputs are made with and a manifest with checksums.

    python export.py --task retrieval --ckpt runs/demo/retrieval --out runs/demo/exports/retrieval
    python export.py --task caption --ckpt runs/demo/caption --out runs/demo/exports/caption \
                     [--set generate.strategy=greedy]
    python export.py --task pretrain --ckpt runs/demo/pretrain --out runs/demo/exports/pretrain
    python export.py --task t2i --ckpt runs/demo/pretrain --out runs/demo/exports/t2i [--set t2i.top_k=16]
    python export.py --task vqa --ckpt runs/demo/vqa --out runs/demo/exports/vqa
    python export.py --task TASK --ckpt RUN --out BUNDLE [--format MINDIR|AIR] [--config RECIPE.yaml]
                     [--data PREPARED] [--set key=value ...]

writes BUNDLE/<graph>.mindir, BUNDLE/data_settings/ (the vocabulary, the extractors' settings, the standardisation
statistics, labels and answers) and BUNDLE/bundle.json (what each graph takes and returns, the packages the inputs
need, every file's checksum: src/infer/bundle.py). Every graph is loaded back and checked against the network on
made-up rows before the command ends; the training data is not read, and the bundle runs without it and without the
run: `eval.py --mindir BUNDLE --data PREPARED`, `infer.py --mindir BUNDLE --image x.png`, `infer.py --mindir BUNDLE
--text "a caption" --out x.png` or `infer.py --mindir BUNDLE --image x.png --question "..."`. --config names the
recipe the checkpoint was trained with (default: the run's config.yaml); --data the prepared set whose settings the
bundle carries (default: the data the run was trained on, or its data_settings when that data is gone).
"""
from __future__ import annotations

import sys

from src.cli import entry_point, task_parser
from src.commands import add_set_arg
from src.compile_cache import enable_compile_cache, graph_options
from src.tasks import registry


def parse_args(argv=None):
    from src.infer.export import FORMATS
    p = task_parser(__doc__, "export")
    p.add_argument("--ckpt", required=True, help="a checkpoint file or a run directory")
    p.add_argument("--out", required=True, help="the bundle folder to write (replaced whole when it exists)")
    p.add_argument("--format", default="MINDIR", choices=list(FORMATS))
    p.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the run's "
                                                  "config.yaml)")
    p.add_argument("--data", default=None, help="the prepared set whose settings the bundle carries (default: the "
                                                "run's training data or its data_settings)")
    add_set_arg(p)
    return p.parse_args(argv)


def export(args) -> None:
    import mindspore as ms
    from src.data.records import open_prepared
    from src.infer.export import export_bundle
    ms.set_context(mode=ms.GRAPH_MODE)
    task = registry.get(args.task, "export")
    overrides = list(args.set) + ([f"data.path={args.data}"] if args.data else [])
    cfg, graphs = registry.open_graphs(task, args.ckpt, None, args.config, overrides)
    enable_compile_cache("export", cfg, graph_options(args, ignored=("out",)))
    data = open_prepared(cfg.data.path)  # --data, else the training data, else the run's data_settings
    manifest = export_bundle(cfg, graphs.checkpoint, task.name, graphs.graph_set, data, args.out, args.format)
    print(f"bundle: {manifest.parent} ({sum(f.stat().st_size for f in manifest.parent.rglob('*')) / 1e6:.1f} MB)")


main = entry_point(parse_args, export)


if __name__ == "__main__":
    sys.exit(main())
