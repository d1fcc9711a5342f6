"""Whisper encoder speed: 3-second clips -> features, in clips per second, for the "clip" and "padded" (30 s) modes.

    python bench/bench_whisper.py [--clips 64] [--seconds 3] [--batch-size 8] [--modes clip padded]
                                  [--model-dir DIR]   # another CTranslate2 Whisper folder instead of tiny.en

The clips are synthetic (tone sweeps in noise; the content does not change the cost). Per mode: the first call on
one full batch, which compiles the graph for that shape (its time minus a steady batch's time is reported as
compile + warm-up seconds), then `--repeats` timed passes over all clips (best and median clips/s). The log-mel is
included in the timed part, as the feature extractor computes it per call; the log-mel alone is timed too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402

from src.data.whisper import (SAMPLE_RATE, WhisperEncoder, WhisperFeatureExtractor, log_mel_spectrogram,  # noqa: E402
                              read_ctranslate2_header, read_ctranslate2_model)


def synthetic_clips(n: int, seconds: float, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clips = []
    for _ in range(n):
        f0, f1 = rng.uniform(100, 400), rng.uniform(500, 3000)
        sweep = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
        clips.append((0.3 * sweep + 0.02 * rng.standard_normal(len(t))).astype(np.float32))
    return clips


def bench_mode(extract: WhisperFeatureExtractor, clips: list, repeats: int) -> dict:
    """First call on one batch (compiles that shape) and a steady one; then the best and median of `repeats`
    passes over all clips (the best is the least disturbed by other load on a shared machine)."""
    batch = clips[:extract.batch_size]
    started = time.perf_counter()
    extract(batch)
    first = time.perf_counter() - started
    started = time.perf_counter()
    extract(batch)
    steady = time.perf_counter() - started
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        extract(clips)
        passes.append(time.perf_counter() - started)
    return {"compile_s": first - steady, "best": len(clips) / min(passes),
            "median": len(clips) / float(np.median(passes)), "batch_s": steady}


def load_encoder(model_dir):
    if model_dir is None:
        return WhisperEncoder.from_pretrained("tiny.en"), "tiny.en"
    started = time.perf_counter()
    encoder = WhisperEncoder(read_ctranslate2_model(model_dir, prefix="encoder/"))
    print(f"parsed {model_dir} {read_ctranslate2_header(model_dir)} in {time.perf_counter() - started:.2f} s")
    return encoder, str(model_dir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bucket-seconds", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=["clip", "padded"], choices=["clip", "padded"])
    p.add_argument("--model-dir", default=None)
    args = p.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    encoder, label = load_encoder(args.model_dir)
    print(f"{label}: d={encoder.dim} layers={encoder.num_layers} heads={encoder.heads}, {args.clips} clips of "
          f"{args.seconds:g} s, batch {args.batch_size}")
    clips = synthetic_clips(args.clips, args.seconds)
    started = time.perf_counter()
    for clip in clips:
        log_mel_spectrogram(clip)
    print(f"log-mel alone: {len(clips) / (time.perf_counter() - started):.0f} clips/s")
    for mode in args.modes:
        extract = WhisperFeatureExtractor(mode=mode, batch_size=args.batch_size, bucket_seconds=args.bucket_seconds,
                                          encoder=encoder)
        r = bench_mode(extract, clips, args.repeats)
        print(f"{mode:>7}: {r['best']:6.1f} clips/s (median {r['median']:.1f})   first call - steady "
              f"(compile + warm-up) {r['compile_s']:5.1f} s   one batch of {args.batch_size}: {r['batch_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
