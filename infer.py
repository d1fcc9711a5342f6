"""Caption one image, transcribe one recording, or describe both with a text generation checkpoint; or draw an
image from a caption (optionally with its audio) with a checkpoint pre-trained with DIR:

    python infer.py --ckpt runs/demo/caption --image photo.png
    python infer.py --ckpt runs/demo/caption --audio speech.wav
    python infer.py --ckpt runs/demo/caption --image photo.png --audio speech.wav [--set generate.strategy=greedy]
    python infer.py --mindir exports/caption.json --image photo.png       # on the graphs export.py wrote
    python infer.py --ckpt runs/demo/pretrain --text "smiling face with heart eyes" --out face.png [--count 4]
    python infer.py --ckpt runs/demo/pretrain --text "..." --audio speech.wav --out face.png [--set t2i.top_k=16]

Features are extracted exactly as for the data the model was trained on (its prepared directory's settings). Audio
longer than the model hears (data.max_audio_tokens) is cut, with a warning that says by how much; so is a caption
longer than data.max_text_len. Images are 64x64 PNGs (the dVAE's size); with --count N they are PATH_0.png ..
PATH_{N-1}.png, N samples of the same caption.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

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
    p.add_argument("--text", default=None, help="text-to-image: the caption to draw")
    p.add_argument("--lang", default="en", help="the language of the caption to generate, or of --text (en, zh, ...)")
    p.add_argument("--out", default="generated.png", help="text-to-image: the PNG to write")
    p.add_argument("--count", type=int, default=1, help="text-to-image: images to sample from the caption")
    p.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the run's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    args = p.parse_args(argv)
    if args.text is not None:
        if args.image:
            p.error("text-to-image reads --text and optionally --audio, not --image")
        if not args.text.strip() or args.count < 1:
            p.error("--text must not be empty and --count must be at least 1")
    elif not (args.image or args.audio):
        p.error("give --image, --audio or both (text generation), or --text (text-to-image)")
    if (args.ckpt is None) == (args.mindir is None):
        p.error("give one of --ckpt and --mindir")
    return args


def file_inputs(data, cfg, image: str = None, audio: str = None, text: str = None, lang: str = "en"):
    """One row of model inputs (batch of 1) from a caption, an image and/or an audio file, and warning lines."""
    from src.data.extractors import audio_tokens, image_regions
    from src.data.pipeline import INPUT_COLUMNS, Collator
    from src.data.prepare import settings_like
    prep = settings_like(cfg.data.path).prepare
    data_cfg = dataclasses.replace(cfg.data, batch_size=1)
    empty = np.zeros(0, np.float32)
    no_mrc = np.zeros(0, np.int32)  # MRC targets are for training; inference rows carry none
    row = dict(index=[0], text_ids=[np.zeros(0, np.int32)], n_text=[0], image_feat=[empty], image_boxes=[empty],
               mrc_ids=[no_mrc], mrc_probs=[empty], n_regions=[0], audio_feat=[empty], n_audio=[0])
    warnings = []
    if text:
        from src.tasks.caption_eval import tokenizer_of
        ids = np.asarray(tokenizer_of(data).encode(text, lang), np.int32)
        row.update(text_ids=[ids], n_text=[len(ids)])
        if len(ids) > cfg.data.max_text_len - 2:
            warnings.append(f"warning: the caption has {len(ids)} word pieces, the model reads the first "
                            f"{cfg.data.max_text_len - 2} (data.max_text_len={cfg.data.max_text_len})")
    if image:
        regions = _read(image_regions, image, prep.image)
        k, n = data.mrc_top_k, len(regions.features)
        row.update(image_feat=[regions.features.reshape(-1)], image_boxes=[regions.boxes.reshape(-1)],
                   mrc_ids=[np.zeros(n * k, np.int32)], mrc_probs=[np.zeros(n * k, np.float32)], n_regions=[n])
    if audio:
        tokens, cut_seconds = _read(audio_tokens, audio, prep.audio)
        row.update(audio_feat=[tokens.reshape(-1)], n_audio=[len(tokens)])
        warnings.append(audio_cut_warning(audio, len(tokens), cut_seconds, cfg.data.max_audio_tokens,
                                          data.audio_token_seconds()))
    batch = Collator(data, data_cfg, training=False).pad_batch(**row)
    return tuple(batch[c] for c in INPUT_COLUMNS), [w for w in warnings if w]


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
    from src.data.tokenizer import decoder_start_ids
    from src.infer.generate import Generator, text_symbols
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
    inputs, warnings = file_inputs(data, cfg, args.image, args.audio)
    for warning in warnings:
        print(warning, file=sys.stderr)
    text = data.meta["text"]
    generator = Generator(model, modalities, dataclasses.replace(cfg.generate, batch_size=1),
                          text_symbols(text["special_ids"], text["vocab_size"]), cfg.model.max_positions,
                          graphs=graphs)
    start = decoder_start_ids(data.vocab_path, [args.lang], text["special_ids"]["[CLS]"])
    return tokenizer_of(data).decode(generator(inputs, start)[0], args.lang)


def draw(args) -> list:
    """Text-to-image: the PNGs written for args.text (and args.audio)."""
    import mindspore as ms
    from src.tasks.dvae import to_uint8, write_png
    from src.tasks.text_to_image import load_generator
    from src.train.checkpoint import load_run_config, resolve_checkpoint

    ms.set_context(mode=ms.GRAPH_MODE)
    modalities = ("text", "audio") if args.audio else ("text",)
    overrides = list(args.set) + ["t2i.batch_size=1"]
    exported = ckpt = None
    if args.mindir:
        from src.infer.export import ExportedGraphs
        exported = ExportedGraphs(args.mindir)
        exported.require("t2i", "infer.py --text")
        cfg = exported.config(overrides)
    else:
        cfg, ckpt = load_run_config(args.ckpt, args.config, overrides), resolve_checkpoint(args.ckpt)
    generate, data = load_generator(cfg, modalities, ckpt, exported)
    inputs, warnings = file_inputs(data, cfg, audio=args.audio, text=args.text, lang=args.lang)
    for warning in warnings:
        print(warning, file=sys.stderr)
    _, images = generate(args.count, lambda rows: tuple(x[np.zeros(len(rows), np.int64)] for x in inputs))
    out = Path(args.out)
    paths = [out] if args.count == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}")
                                          for i in range(args.count)]
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, image in zip(paths, images):
        write_png(path, to_uint8(image))
    return paths


def main(argv=None) -> int:
    args = parse_args(argv)
    from src.infer.export import ExportError
    try:
        if args.text is not None:
            for path in draw(args):
                print(path)
            return 0
        print(describe(args))
    except (ConfigError, DatasetError, CheckpointError, FeatureError, FileNotFoundError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
