"""Speed of the pretrained extractors as preparation runs them (decode, resize / log-mel, batched network):

    python bench/bench_extract.py [--images DIR] [--seconds 3] [--clips 64] [--batch 16]

Prints images/s of EfficientNet-Lite0 regions (files decoded and resized, the network in batches of --batch) and
clips/s of Whisper tiny.en frames for clips of --seconds (speech-like noise bursts; the encoder's cost depends only
on the length), computed on each clip's own length and, for comparison, on 30 s of padding (Whisper's training input).
The first call of each shape (graph compilation, session start) is timed apart.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.config import AudioFeatureConfig, ImageFeatureConfig  # noqa: E402
from src.data.extractors import audio_tokens_batch, image_regions_batch  # noqa: E402
from src.data.image import read_image  # noqa: E402


def timed(fn, repeats: int = 1):
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - t) / repeats, out


def bench_images(paths, batch: int) -> None:
    cfg = ImageFeatureConfig(extractor="efficientnet_lite0")
    start, _ = timed(lambda: image_regions_batch([read_image(paths[0])], cfg))
    secs, _ = timed(lambda: [image_regions_batch([read_image(p) for p in paths[i:i + batch]], cfg)
                             for i in range(0, len(paths), batch)])
    print(f"EfficientNet-Lite0 regions: {len(paths)} images in {secs:.2f} s = {len(paths) / secs:.1f} images/s "
          f"(decode + resize + network, batch {batch}; first call incl. graph build {start:.2f} s)")


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Noise shaped by a syllable-rate envelope: a stand-in whose cost equals a real clip's."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * rng.standard_normal(len(t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def bench_audio(seconds: float, clips: int) -> None:
    waves = [speech_like(seconds, i) for i in range(clips)]
    for window in ("clip", "padded"):
        cfg = AudioFeatureConfig(extractor="whisper_tiny_en", frames_per_token=1, whisper_window=window)
        first, _ = timed(lambda: audio_tokens_batch(waves[:8], cfg))
        count = clips if window == "clip" else max(8, clips // 8)
        secs, out = timed(lambda: audio_tokens_batch(waves[:count], cfg))
        print(f"Whisper tiny.en ({window:6s}): {count} clips of {seconds:g} s in {secs:.2f} s = {count / secs:.1f} "
              f"clips/s, {out[0].shape[0]} frames each (first batch incl. compile {first:.2f} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="data/demo/raw/images", help="a folder of images (default: the demo's)")
    ap.add_argument("--count", type=int, default=256, help="images to extract")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clips", type=int, default=64)
    args = ap.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(args.images, "*.png")) + glob.glob(os.path.join(args.images, "*.jpg")))
    if paths:
        bench_images(paths[:args.count], args.batch)
    else:
        print(f"no images in {args.images}; skipping the image extractor (run scripts/prepare_demo_data.sh)")
    bench_audio(args.seconds, args.clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
