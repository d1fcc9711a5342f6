"""webdataset tar shards as img2dataset writes them (CC3M, CC12M, LAION): `<key>.jpg|png|webp` + `<key>.txt`
[+ `<key>.json`, `<key>.wav|flac|mp3`], samples grouped by key. The source is a shard, a folder of shards, a glob
(`shards/*.tar`) or a brace list (`shards/{00000..00099}.tar`).

Each shard is read once as a stream to list its members; images and recordings are then named by their byte range
inside the shard (src/data/archive.py), so nothing is unpacked. Captions are read here: the `.txt`, else the
`caption` of the `.json`.
"""
from __future__ import annotations

import glob
import json
import re
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List

from src.data.archive import member_path
from src.data.sources import Entry, Problem, Sample, SourceFormat, register_format

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
AUDIO_EXTENSIONS = ("wav", "flac", "mp3", "ogg")
_BRACES = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> List[str]:
    """'a/{000..002}.tar' -> a/000.tar, a/001.tar, a/002.tar (zero padding kept); 'a/{x,y}.tar' -> a/x.tar, a/y.tar."""
    m = _BRACES.search(pattern)
    if not m:
        return [pattern]
    body, head, tail = m[1], pattern[:m.start()], pattern[m.end():]
    numbers = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numbers:
        lo, hi, width = int(numbers[1]), int(numbers[2]), len(numbers[1])
        options = [str(i).zfill(width) for i in range(lo, hi + 1)]
    else:
        options = body.split(",")
    return [p for option in options for p in expand_braces(head + option + tail)]


def shard_paths(source: str) -> List[str]:
    """The shards a source names, sorted within each glob; a missing shard or an empty match is an error."""
    if Path(source).is_dir():
        found = sorted(str(p) for p in Path(source).glob("*.tar"))
        if not found:
            raise FileNotFoundError(f"no .tar shard in the folder {source}")
        return [str(Path(p).resolve()) for p in found]
    shards = []
    for pattern in expand_braces(source):
        if glob.has_magic(pattern):
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise FileNotFoundError(f"no shard matches {pattern}")
            shards += matched
        elif Path(pattern).is_file():
            shards.append(pattern)
        else:
            raise FileNotFoundError(f"shard not found: {pattern}")
    return [str(Path(p).resolve()) for p in shards]


def read_webdataset(source: str, split: str = "train") -> Iterator[Entry]:
    for shard in shard_paths(source):
        yield from read_shard(shard, split)


def read_shard(shard: str, split: str) -> Iterator[Entry]:
    """The samples of one shard, in the order of their first member."""
    groups: Dict[str, dict] = {}
    try:
        with tarfile.open(shard, "r|") as tar:  # a stream: each member's header is read, its data skipped
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.rpartition(".")
                if not key:
                    continue
                group = groups.setdefault(key, {})
                if ext.lower() in ("txt", "json"):
                    group[ext.lower()] = tar.extractfile(info).read()
                else:
                    group[ext.lower()] = member_path(shard, info.offset_data, info.size, info.name)
    except tarfile.ReadError as e:
        yield Problem(shard, None, f"not an uncompressed tar shard ({e}); img2dataset writes plain .tar")
        return
    for key, group in groups.items():
        yield _sample(key, group, f"{shard}: {key}", split)


def _sample(key: str, group: dict, where: str, split: str) -> Entry:
    sid = Path(key).name
    meta = {}
    if "json" in group:
        try:
            meta = json.loads(group["json"].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return Problem(where + ".json", sid, f"invalid JSON ({e})")
        if not isinstance(meta, dict):
            return Problem(where + ".json", sid, "the .json member must be an object")
        sid = str(meta.get("key") or sid)
    text = _caption(group, meta)
    if isinstance(text, Problem):
        return Problem(where + ".txt", sid, text.reason)
    image = next((group[e] for e in IMAGE_EXTENSIONS if e in group), None)
    audio = next((group[e] for e in AUDIO_EXTENSIONS if e in group), None)
    if image is None and audio is None:
        return Problem(where, sid, f"no image ({'/'.join(IMAGE_EXTENSIONS)}) or audio member "
                                   f"(has: {', '.join(sorted(group))})")
    return Sample(id=sid, where=where, text=text, image=image, audio=audio, split=split)


def _caption(group: dict, meta: dict):
    if "txt" in group:
        try:
            return group["txt"].decode("utf-8").strip()
        except UnicodeDecodeError as e:
            return Problem("", None, f"caption is not UTF-8 text (byte {e.start})")
    caption = meta.get("caption")
    return caption.strip() if isinstance(caption, str) else None


register_format("webdataset", SourceFormat(lambda path, split, image_dir, audio_dir: read_webdataset(path, split),
                                         expand=shard_paths))
