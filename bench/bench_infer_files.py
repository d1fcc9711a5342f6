"""Captioning a folder: one infer.py call over the folder against one infer.py call per image (images/s of each).

    python bench/bench_infer_files.py --ckpt runs/demo/caption [--images 200] [--single 10]

The images are generated (a colour and a shape each, tests/formats.py); the per-image figure comes from the first
--single images, each a process of its own as a user's loop over files would start it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.formats import picture  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a caption run")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--single", type=int, default=10, help="images captioned one process each")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i in range(args.images):
            cv2.imwrite(str(folder / f"{i:04d}.jpg"), cv2.resize(picture(i), (224, 224)))
        infer = [sys.executable, str(ROOT / "infer.py"), "--ckpt", args.ckpt]
        started = time.perf_counter()
        subprocess.run(infer + ["--image", str(folder), "--out", str(Path(tmp) / "out.jsonl")], check=True,
                       capture_output=True)
        folder_seconds = time.perf_counter() - started
        lines = (Path(tmp) / "out.jsonl").read_text().splitlines()
        started = time.perf_counter()
        for path in sorted(folder.iterdir())[:args.single]:
            subprocess.run(infer + ["--image", str(path)], check=True, capture_output=True)
        single_seconds = (time.perf_counter() - started) / args.single
    result = {"images": args.images, "folder_seconds": round(folder_seconds, 1),
              "folder_images_per_second": round(args.images / folder_seconds, 2),
              "single_seconds_per_image": round(single_seconds, 1),
              "single_images_per_second": round(1 / single_seconds, 3),
              "speedup": round(args.images / folder_seconds * single_seconds, 1), "lines": len(lines)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
