"""Run a trained model on one input: caption one image, transcribe one recording, or describe both with a text
generation checkpoint; or draw an image from a caption (optionally with its audio) with a checkpoint pre-trained with
DIR. --task picks what runs (every task registered in src/tasks/ that infers); by default, the one for the run's
(or the export's) task:

    python infer.py --ckpt runs/demo/caption --image photo.png
    python infer.py --ckpt runs/demo/caption --audio speech.wav
    python infer.py --ckpt runs/demo/caption --image photo.png --audio speech.wav [--set generate.strategy=greedy]
    python infer.py --mindir exports/caption --image photo.png            # on the bundle export.py wrote
    python infer.py --ckpt runs/demo/caption --image photos/ --out captions.jsonl   # a folder (or a .txt list)
    python infer.py --ckpt runs/demo/pretrain --text "smiling face with heart eyes" --out face.png [--count 4]
    python infer.py --ckpt runs/demo/pretrain --text "..." --audio speech.wav --out face.png [--set t2i.top_k=16]
    python infer.py --ckpt runs/demo/vqa --image photo.png --question "which group is this emoji in?"
    python infer.py --ckpt runs/demo/vqa --image photo.png --audio question.wav   # a spoken question
    python infer.py --ckpt runs/demo/retrieval --gallery photos/ --index photos.index   # search: index once,
    python infer.py --index photos.index --text "a red square" --top 5                 # then ask it
    python infer.py --index photos.index --queries captions.txt --top 5                # many captions at once
    python infer.py [--task TASK] (--ckpt RUN [--config RECIPE.yaml] | --mindir SIDECAR) [--lang zh] INPUT ...

--lang is the language of the caption to generate or of --text. A search gallery's kind comes from its files
(--gallery-modality image|audio|text says it); a prepared set as gallery is read from its --split. Features are
extracted exactly as for the data the model was trained on (its prepared directory's settings). Audio longer than the
model hears (data.max_audio_tokens) is cut, with a warning that says by how much; so is a caption longer than
data.max_text_len. Images are 64x64 PNGs (the dVAE's size); with --count N they are PATH_0.png .. PATH_{N-1}.png, N
samples of the same caption.
"""
from __future__ import annotations

import sys
from pathlib import Path

from src.cli import add_source_args, check_source_args, entry_point, task_parser
from src.compile_cache import enable_compile_cache, graph_options
from src.config import ConfigError
from src.files import write_text_atomic
from src.infer.file_inputs import is_many
from src.tasks import registry


def parse_args(argv=None):
    p = task_parser(__doc__, "infer", required=False, help="default: the one for the run's or export's task")
    add_source_args(p, "trained")
    p.add_argument("--image", default=None, help="an image file (or precomputed .npz regions); text generation: "
                                                 "also a folder or a list file (.txt) of images")
    p.add_argument("--audio", default=None, help="an audio file (or precomputed .npz frames); text generation: also "
                                                 "a folder or a list file (.txt) of recordings")
    p.add_argument("--text", default=None, help="a text input: the caption to draw (t2i) or to search with")
    p.add_argument("--lang", default="en", help="the language of the caption to generate, or of --text (en, zh, ...)")
    p.add_argument("--out", default=None, help="text-to-image: the PNG to write (default generated.png); many inputs "
                                               "(a folder or list): the JSON Lines file to write (default stdout)")
    args = p.parse_args(argv)
    own_input = registry.complete_flags(p, args, "infer")  # a task's own flags: search's --index gives --ckpt
    check_source_args(p, args)
    if not (args.image or args.audio or args.text is not None or own_input):
        p.error("give an input: --image, --audio or both (text generation), --text (text-to-image, search), or a "
                "task's own flags (listed by --help under the task)")
    return args


def source_task(args) -> str:
    """The task of the run (its config.yaml) or of the export the input goes to."""
    if args.mindir:
        from src.infer.graphs import ExportedGraphs
        return ExportedGraphs(args.mindir).task
    from src.train.checkpoint import load_run_config
    return load_run_config(args.ckpt, args.config, args.set).task


def infer(args) -> None:
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    name = args.task or registry.infer_task(source_task(args))
    if name is None:
        raise ConfigError(f"infer.py: nothing runs on a '{source_task(args)}' run by default; name one with --task "
                          f"({', '.join(registry.names('infer'))})")
    task = registry.get(name, "infer")
    cfg, graphs = registry.open_graphs(task, args.ckpt, args.mindir, args.config, args.set,
                                       needed_by=f"infer.py --task {name}")
    enable_compile_cache("infer", cfg, graph_options(args, ignored=("out",)))
    lines = task.infer(args, graphs, cfg)
    if args.out and (is_many(args.image) or is_many(args.audio)):
        write_text_atomic(Path(args.out), "".join(line + "\n" for line in lines))
        print(f"{len(lines)} lines: {args.out}")
        return
    for line in lines:
        print(line)


main = entry_point(parse_args, infer)


if __name__ == "__main__":
    sys.exit(main())
