"""Export a trained network for deployment: MINDIR graphs (AIR with --format AIR, on Ascend) with a dynamic batch
dimension and a JSON sidecar naming their inputs, outputs and the tokenizer.

    python export.py --task retrieval --ckpt runs/demo/retrieval --out exports/retrieval
    python export.py --task caption --ckpt runs/demo/caption --out exports/caption [--set generate.strategy=greedy]
    python export.py --task pretrain --ckpt runs/demo/pretrain --out exports/pretrain
    python export.py --task t2i --ckpt runs/demo/pretrain --out exports/t2i [--set t2i.top_k=16]
    python export.py --task vqa --ckpt runs/demo/vqa --out exports/vqa
    python export.py --task TASK --ckpt RUN --out PREFIX [--format MINDIR|AIR] [--config RECIPE.yaml]
                     [--data PREPARED] [--set key=value ...]

writes exports/<task>.<graph>.mindir, exports/<task>.vocab.txt and exports/<task>.json (what each graph takes and
returns: src/infer/export.py). Every graph is loaded back and checked against the network, on rows of the prepared
data (--data, default the config's data.path), before the command ends. --config names the recipe the checkpoint was
trained with (default: the run's config.yaml). Run the graphs with `eval.py --mindir exports/<task>.json`,
`infer.py --mindir exports/caption.json --image x.png`, `infer.py --mindir exports/t2i.json --text "a caption" --out
x.png` or `infer.py --mindir exports/vqa.json --image x.png --question "..."`.
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
    p.add_argument("--out", required=True, help="file prefix: PREFIX.<graph>.mindir and PREFIX.json are written")
    p.add_argument("--format", default="MINDIR", choices=list(FORMATS))
    p.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the run's "
                                                  "config.yaml)")
    p.add_argument("--data", default=None, help="a prepared dataset (default: the config's data.path)")
    add_set_arg(p)
    return p.parse_args(argv)


def export(args) -> None:
    import mindspore as ms
    from src.infer.export import export_graphs
    ms.set_context(mode=ms.GRAPH_MODE)
    task = registry.get(args.task, "export")
    overrides = list(args.set) + ([f"data.path={args.data}"] if args.data else [])
    cfg, graphs = registry.open_graphs(task, args.ckpt, None, args.config, overrides)
    enable_compile_cache("export", cfg, graph_options(args, ignored=("out",)))
    sidecar = export_graphs(cfg, graphs.checkpoint, task.name, graphs.graph_set, args.out, args.format)
    print(f"sidecar: {sidecar}")


main = entry_point(parse_args, export)


if __name__ == "__main__":
    sys.exit(main())
