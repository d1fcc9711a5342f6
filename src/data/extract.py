"""Extract once, prepare many times: run the feature extractors over a source and write their output as the
precomputed `.npz` files that preparation reads, plus a manifest that points at them. The entry behind
scripts/extract_features.sh:

    python -m src.data.extract SOURCE OUT_DIR [--format manifest|coco|karpathy|aic|csv|webdataset|narratives]
                               [--on-error fail|skip] [--split NAME] [--image-dir DIR] [--audio-dir DIR]
                               [--annotations FILE] [--csv-img-key COL] [--csv-caption-key COL] [--csv-audio-key COL]
                               [--csv-separator SEP] [--config config/x.yaml] [--set prepare.extract_batch=32 ...]

OUT_DIR/manifest.jsonl    the source's samples, `image` / `audio` pointing at the files below
OUT_DIR/images/*.npz      per image: `features` float16 [N, D], `norm_bb` [N, 7], `cls_prob` float16 [N, C] (when the
                          extractor gives class distributions), `thumb` uint8 [S, S, 3]
OUT_DIR/audio/*.npz       per recording: `features` float16 [T, D], the audio tokens
OUT_DIR/features.json     the extractors (name, weights package and version), the prepare settings, skipped samples

Preparing OUT_DIR/manifest.jsonl gives the same shards as preparing the source itself with the same settings (the
same code computes the features; they are stored as float16 either way). So a machine with an accelerator can extract
and any machine can prepare. A VQA source is prepared directly: its answers (--annotations) have no place in a
manifest. Exit status
as preparation's (src/data/prepare.py): 2 for bad input, one `error:` line.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from src.commands import run_main
from src.config import PrepareConfig, load_config, to_dict
from src.data.errors import PrepareError, written_whole
from src.data.extractors import audio_extractor_info, check_extractors, image_extractor_info
from src.data.prepare import (USER_ERRORS, extract_all, extractor_hint, format_options,
                              source_arguments)
from src.data.records import FEATURES_RECORD, write_json_atomic
from src.data.sources import Problem, Sample, read_source


def feature_file(folder: str, source_path: str) -> str:
    """A stable, collision-free name for the features of one input file."""
    digest = hashlib.sha1(str(Path(source_path).resolve()).encode()).hexdigest()[:10]
    return f"{folder}/{Path(source_path).stem}-{digest}.npz"


def save_npz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def extract_features(source: str, out_dir: str, cfg: PrepareConfig, fmt: str = "manifest", split: str = "train",
                     on_error: str = "fail", image_dir: Optional[str] = None, audio_dir: Optional[str] = None,
                     log=print, **options) -> dict:
    """Write OUT_DIR (see the module doc) and return its features.json record."""
    if fmt == "vqa":
        raise PrepareError("feature extraction writes a manifest, which has no place for VQA answers: prepare the VQA "
                           "files directly (scripts/prepare_data.sh --format vqa)")
    check_extractors(cfg.image, cfg.audio)
    t0 = time.time()
    samples, problems = [], []
    for entry in read_source(source, fmt, split, image_dir, audio_dir, **options):
        (problems if isinstance(entry, Problem) else samples).append(entry)
    _stop_on(problems, on_error)
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "audio").mkdir()
    rows, written = [], set()
    with written_whole(out, tmp, "the features"):
        for sample, result in zip(samples, extract_all(samples, cfg)):
            if isinstance(result, Problem):
                _stop_on([result], on_error)
                log(f"skipping {result.message()}")
                problems.append(result)
                continue
            rows.append(_write_sample(sample, *result, tmp, written))
        record = {"image": image_extractor_info(cfg.image) if any(s.image for s in samples) else None,
                  "audio": audio_extractor_info(cfg.audio) if any(s.audio for s in samples) else None,
                  "prepare": to_dict(cfg), "source": str(Path(source).resolve()), "format": fmt,
                  "samples": len(rows), "files": len(written), "skipped": [dataclasses.asdict(p) for p in problems]}
        (tmp / "manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                            encoding="utf-8")
        write_json_atomic(tmp / FEATURES_RECORD, record)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    secs = time.time() - t0
    log(f"extracted the features of {len(rows)} samples ({len(written)} files) into {out} in {secs:.1f} s "
        f"({len(rows) / max(secs, 1e-9):.1f} samples/s); skipped {len(problems)}")
    return record


def _stop_on(problems, on_error: str) -> None:
    if problems and on_error == "fail":
        raise PrepareError(problems[0].message() + "; nothing was written. Use --on-error skip to skip bad samples")


def _write_sample(sample: Sample, regions, tokens, cut, tmp: Path, written: set) -> dict:
    row = {"id": sample.id, "split": sample.split, "lang": sample.lang, "labels": sample.labels}
    if sample.text:
        row["text"] = sample.text
    if regions is not None:
        row["image"] = feature_file("images", sample.image)
        if row["image"] not in written:
            arrays = {"features": regions.features.astype(np.float16), "norm_bb": regions.boxes.astype(np.float32)}
            if regions.class_probs is not None:
                arrays["cls_prob"] = regions.class_probs.astype(np.float16)
            if regions.thumb is not None:
                arrays["thumb"] = regions.thumb
            save_npz(tmp / row["image"], **arrays)
            written.add(row["image"])
    if tokens is not None:
        row["audio"] = feature_file("audio", sample.audio)
        if row["audio"] not in written:
            save_npz(tmp / row["audio"], features=tokens.astype(np.float16))
            written.add(row["audio"])
    return row


def main(argv=None) -> int:
    ap = source_arguments("scripts/extract_features.sh", __doc__.split("\n")[0])
    args = ap.parse_args(argv)

    def run() -> None:
        cfg = load_config(args.config, args.overrides, only=("prepare",))
        with extractor_hint():
            extract_features(args.source, args.out_dir, cfg.prepare, args.format, args.split, args.on_error,
                             args.image_dir, args.audio_dir, **format_options(args))
    return run_main(run, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
