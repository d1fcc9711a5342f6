"""Source readers on generated sets of the same samples: reading (entries/s) and whole preparation (samples/s) of
each format beside the manifest reader's.

    python bench/bench_readers.py [--samples 10000] [--no-prepare] [--config config/pretrain_tiny.yaml]

Each set holds --samples captions of 48x48 images (five captions an image); preparation runs with the recipe's
prepare section (the tiny recipe's grid regions by default: the reader, decoding, shards and statistics are
measured, not a pretrained network).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from src.config import load_config  # noqa: E402
from src.data import captions, webdataset  # noqa: E402,F401 (their formats)
from src.data.prepare import prepare  # noqa: E402
from src.data.sources import Sample, read_source  # noqa: E402
from tests.formats import describe, picture  # noqa: E402


def write_sets(root: Path, samples: int) -> dict:
    """The same captions of the same images in each format: {format: (source path, reader options)}."""
    images = samples // 5
    (root / "img").mkdir(parents=True)
    for i in range(images):
        cv2.imwrite(str(root / "img" / f"{i}.jpg"), picture(i))
    pairs = [(i // 5, describe(i // 5, i % 5)) for i in range(samples)]
    with open(root / "manifest.jsonl", "w") as f:
        for k, (i, text) in enumerate(pairs):
            f.write(json.dumps({"id": str(k), "image": f"img/{i}.jpg", "text": text}) + "\n")
    karpathy = {"images": [{"filename": f"{i}.jpg", "filepath": "img", "split": "train", "imgid": i,
                            "sentences": [{"raw": describe(i, k), "sentid": 5 * i + k} for k in range(5)]}
                           for i in range(images)]}
    (root / "karpathy.json").write_text(json.dumps(karpathy))
    (root / "aic.json").write_text(json.dumps([{"image_id": f"{i}.jpg", "caption": [describe(i, k) for k in range(5)]}
                                               for i in range(images)]))
    with open(root / "pairs.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filepath", "title"])
        writer.writerows((f"img/{i}.jpg", text) for i, text in pairs)
    shard_size = 1000
    for s in range(0, samples, shard_size):
        with tarfile.open(root / f"{s // shard_size:05d}.tar", "w") as tar:
            for k in range(s, min(s + shard_size, samples)):
                i, text = pairs[k]
                for name, data in ((f"{k:08d}.jpg", (root / "img" / f"{i}.jpg").read_bytes()),
                                   (f"{k:08d}.txt", text.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return {"manifest": (root / "manifest.jsonl", {}), "karpathy": (root / "karpathy.json", {"image_dir": str(root)}),
            "aic": (root / "aic.json", {"image_dir": str(root / "img")}), "csv": (root / "pairs.tsv", {}),
            "webdataset": (root / "*.tar", {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--no-prepare", action="store_true", help="reading only")
    p.add_argument("--config", default=str(ROOT / "config" / "pretrain_tiny.yaml"))
    args = p.parse_args()
    cfg = load_config(args.config).prepare
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = write_sets(Path(tmp) / "src", args.samples)
        for fmt, (path, options) in sets.items():
            started = time.perf_counter()
            entries = list(read_source(str(path), fmt, **options))
            read_seconds = time.perf_counter() - started
            usable = sum(isinstance(e, Sample) for e in entries)
            started = time.perf_counter()
            meta = None if args.no_prepare else prepare(str(path), str(Path(tmp) / f"out_{fmt}"), cfg, fmt,
                                                        log=lambda *a: None, **options)
            prepare_seconds = time.perf_counter() - started
            rows.append({"format": fmt, "entries": usable, "read_per_second": round(usable / read_seconds),
                         **({"prepared": meta["counts"]["written"],
                             "prepare_per_second": round(meta["counts"]["written"] / prepare_seconds, 1)}
                            if meta else {})})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
