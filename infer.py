"""Caption one image, transcribe one recording, or describe both with a text generation checkpoint:

    python infer.py --ckpt runs/demo/caption --image photo.png
    python infer.py --ckpt runs/demo/caption --audio speech.wav
    python infer.py --ckpt runs/demo/caption --image photo.png --audio speech.wav [--set generate.strategy=greedy]
    python infer.py --mindir exports/caption.json --image photo.png       # on the graphs export.py wrote

Features are extracted exactly as for the data the model was trained on (its prepared directory's settings). Audio
longer than the model hears (data.max_audio_tokens) is cut, with a warning that says by how much.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from src.config import ConfigError
from src.data.errors import FeatureError
from src.data.records import DatasetError
from src.train.checkpoint import CheckpointError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="a caption checkpoint file or its run directory")
    p.add_argument("--mindir", default=None, help="instead of --ckpt: the sidecar (PREFIX.json) of a caption export")
    p.add_argument("--image", default=None, help="an image file (or precomputed .npz regions)")
    p.add_argument("--audio", default=None, help="an audio file (or precomputed .npz frames)")
    p.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the run's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    args = p.parse_args(argv)
    if not (args.image or args.audio):
        p.error("give --image, --audio or both")
    if (args.ckpt is None) == (args.mindir is None):
        p.error("give one of --ckpt and --mindir")
    return args


def file_inputs(data, cfg, image: str = None, audio: str = None):
    """One row of model inputs (batch of 1) from an image and/or audio file, and a warning line or None."""
    from src.data.audio import audio_tokens
    from src.data.image import image_regions
    from src.data.pipeline import INPUT_COLUMNS, Collator
    from src.data.prepare import settings_like
    prep = settings_like(cfg.data.path).prepare
    data_cfg = dataclasses.replace(cfg.data, batch_size=1)
    empty = np.zeros(0, np.float32)
    row = dict(index=[0], text_ids=[np.zeros(0, np.int32)], n_text=[0], image_feat=[empty], image_boxes=[empty],
               image_classes=[np.zeros(0, np.int32)], n_regions=[0], audio_feat=[empty], n_audio=[0])
    warning = None
    if image:
        regions = _read(image_regions, image, prep.image)
        row.update(image_feat=[regions.features.reshape(-1)], image_boxes=[regions.boxes.reshape(-1)],
                   image_classes=[np.zeros(len(regions.features), np.int32)], n_regions=[len(regions.features)])
    if audio:
        tokens, cut_seconds = _read(audio_tokens, audio, prep.audio)
        row.update(audio_feat=[tokens.reshape(-1)], n_audio=[len(tokens)])
        warning = audio_cut_warning(audio, len(tokens), cut_seconds, cfg.data.max_audio_tokens,
                                    data.audio_token_seconds())
    batch = Collator(data, data_cfg, training=False).pad_batch(**row)
    return tuple(batch[c] for c in INPUT_COLUMNS), warning


def _read(extract, path: str, cfg):
    try:
        return extract(path, cfg)
    except FeatureError as e:
        raise FeatureError(f"{path}: {e}") from None


def audio_cut_warning(path: str, n_tokens: int, seconds_cut: float, max_tokens: int, token_seconds: float):
    """The warning for a recording longer than the model hears, or None."""
    total = n_tokens * token_seconds + seconds_cut
    heard = min(n_tokens, max_tokens) * token_seconds
    if total - heard < token_seconds / 2:
        return None
    return (f"warning: {path}: {total:.2f} s of audio, the model hears the first {heard:.2f} s "
            f"(data.max_audio_tokens={max_tokens}); the last {total - heard:.2f} s are cut")


def describe(args) -> str:
    import mindspore as ms
    from src.infer.generate import Generator
    from src.tasks.caption import load_trained
    from src.tasks.caption_eval import tokenizer_of
    from src.train.checkpoint import load_run_config, resolve_checkpoint

    ms.set_context(mode=ms.GRAPH_MODE)
    modalities = tuple(m for m, path in (("image", args.image), ("audio", args.audio)) if path)
    graphs = None
    if args.mindir:
        from src.data.records import open_prepared
        from src.infer.export import ExportedGraphs
        exported = ExportedGraphs(args.mindir)
        exported.require("caption", "infer.py")
        cfg = exported.config(args.set)
        model, data = None, open_prepared(cfg.data.path)
        graphs = exported.generator_graphs(modalities, cfg.generate)
    else:
        cfg = load_run_config(args.ckpt, args.config, args.set)
        model, data = load_trained(cfg, resolve_checkpoint(args.ckpt))
    inputs, warning = file_inputs(data, cfg, args.image, args.audio)
    if warning:
        print(warning, file=sys.stderr)
    generator = Generator(model, modalities, dataclasses.replace(cfg.generate, batch_size=1),
                          data.meta["text"]["special_ids"], data.meta["text"]["vocab_size"], cfg.model.max_positions,
                          graphs=graphs)
    return tokenizer_of(data).decode(generator(inputs)[0])


def main(argv=None) -> int:
    args = parse_args(argv)
    from src.infer.export import ExportError
    try:
        print(describe(args))
    except (ConfigError, DatasetError, CheckpointError, FeatureError, FileNotFoundError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
