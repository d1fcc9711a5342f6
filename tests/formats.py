"""Small generated sources in their publishers' formats: a Karpathy split JSON, an AIC-ICC JSON, a CSV table and
webdataset tar shards as img2dataset writes them. Each image gets several captions made of words that describe it."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

from tests.conftest import write_tone

COLOURS = {"red": (40, 40, 220), "green": (40, 200, 40), "blue": (220, 60, 40), "yellow": (40, 220, 230),
           "black": (20, 20, 20), "white": (240, 240, 240)}
SHAPES = ["square", "stripe", "frame"]


def picture(i: int, size: int = 48) -> np.ndarray:
    """Image i: a colour and a shape, both readable from the pixels (BGR uint8)."""
    names = list(COLOURS)
    colour, shape = COLOURS[names[i % len(names)]], SHAPES[(i // len(names)) % len(SHAPES)]
    img = np.full((size, size, 3), 128, np.uint8)
    q = size // 4
    if shape == "square":
        img[q:3 * q, q:3 * q] = colour
    elif shape == "stripe":
        img[:, q:2 * q] = colour
    else:
        img[:q] = img[-q:] = colour
        img[:, :q] = img[:, -q:] = colour
    return img


def describe(i: int, k: int) -> str:
    names = list(COLOURS)
    colour, shape = names[i % len(names)], SHAPES[(i // len(names)) % len(SHAPES)]
    return [f"a {colour} {shape} on grey", f"the {shape} is {colour}", f"{colour} {shape}", f"grey and {colour}",
            f"picture {i} of a {shape}"][k % 5]


def make_karpathy(root: Path, splits: Dict[str, int], captions: int = 5, name: str = "dataset_coco.json",
                  coco_layout: bool = True) -> Path:
    """A Karpathy split JSON: `splits` maps train/restval/val/test to image counts; images under IMAGE/<filepath>/
    (COCO's val2014/train2014) when `coco_layout`, else flat beside the JSON (Flickr30k's)."""
    root.mkdir(parents=True, exist_ok=True)
    images, sentid, i = [], 0, 0
    for split, count in splits.items():
        for _ in range(count):
            folder = ("train2014" if split == "train" else "val2014") if coco_layout else ""
            filename = f"COCO_{folder or 'x'}_{i:012d}.jpg"
            (root / folder).mkdir(exist_ok=True)
            cv2.imwrite(str(root / folder / filename), picture(i))
            sentences = []
            for k in range(captions):
                text = describe(i, k)
                sentences.append({"tokens": text.split(), "raw": text.capitalize() + ".", "imgid": i,
                                  "sentid": sentid})
                sentid += 1
            entry = {"filename": filename, "imgid": i, "split": split, "sentids": [s["sentid"] for s in sentences],
                     "sentences": sentences, "cocoid": 100000 + i}
            if coco_layout:
                entry["filepath"] = folder
            images.append(entry)
            i += 1
    path = root / name
    path.write_text(json.dumps({"images": images, "dataset": "coco"}), encoding="utf-8")
    return path


def make_aic(root: Path, n: int = 4) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        name = f"{i:040x}.jpg"
        cv2.imwrite(str(root / "images" / name), picture(i))
        entries.append({"url": f"http://example.com/{name}", "image_id": name,
                        "caption": ["一个\n红色的方块", "灰色背景上的方块 ", "\n一个 图形"]})
    path = root / "caption_train_annotations_20170902.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    return path


def make_table(root: Path, n: int = 4, sep: str = "\t", name: str = "train.tsv") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = [sep.join(["filepath", "title"])]
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"{i}.png"), picture(i))
        caption = describe(i, 0)
        lines.append(sep.join([f"images/{i}.png", f'"{caption}, with a comma"' if sep == "," else caption]))
    path = root / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_webdataset(root: Path, shards: int = 2, per_shard: int = 3, audio: bool = False) -> List[Path]:
    """img2dataset's layout: NNNNN.tar with <key>.jpg, <key>.txt, <key>.json per sample (+ <key>.wav)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = root / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for j in range(per_shard):
                i = s * per_shard + j
                key = f"{s:05d}{j:04d}"
                _add(tar, f"{key}.jpg", cv2.imencode(".jpg", picture(i))[1].tobytes())
                _add(tar, f"{key}.txt", describe(i, 0).encode())
                _add(tar, f"{key}.json", json.dumps({"url": f"http://x/{i}.jpg", "key": key, "status": "success",
                                                     "caption": describe(i, 0), "width": 48, "height": 48}).encode())
                if audio:
                    wav = root / "tmp.wav"
                    write_tone(wav, 200 + 50 * i)
                    _add(tar, f"{key}.wav", wav.read_bytes())
                    wav.unlink()
        (root / f"{s:05d}_stats.json").write_text(json.dumps({"count": per_shard, "successes": per_shard}))
        paths.append(path)
    return paths

