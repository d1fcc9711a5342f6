"""Files inside uncompressed tar shards, named as paths: "SHARD.tar#OFFSET+SIZE/MEMBER".

A webdataset shard (what img2dataset writes) is read once as a stream to list its members; each image or recording
is then named by where its bytes lie in the shard, so a worker process reads exactly those bytes with one seek, and
nothing is unpacked. Everything that opens a sample's file goes through `read_bytes`, `exists` and `container`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

_MEMBER = re.compile(r"^(?P<shard>.+?\.tar)#(?P<offset>\d+)\+(?P<size>\d+)/(?P<name>.+)$")


def member_path(shard: str, offset: int, size: int, name: str) -> str:
    return f"{shard}#{offset}+{size}/{name}"


def _parse(path: str) -> Optional[re.Match]:
    return _MEMBER.match(path) if "#" in path else None


def container(path: str) -> str:
    """The file on disk that holds `path`: the shard of a member, else the path itself."""
    m = _parse(path)
    return m["shard"] if m else path


def exists(path: str) -> bool:
    """A plain file exists; a member exists when its shard holds its whole byte range."""
    m = _parse(path)
    if not m:
        return Path(path).is_file()
    shard = Path(m["shard"])
    return shard.is_file() and shard.stat().st_size >= int(m["offset"]) + int(m["size"])


def read_bytes(path: str) -> bytes:
    m = _parse(path)
    if not m:
        return Path(path).read_bytes()
    with open(m["shard"], "rb") as f:
        f.seek(int(m["offset"]))
        data = f.read(int(m["size"]))
    if len(data) != int(m["size"]):
        raise OSError(f"{m['shard']} ends inside member {m['name']}")
    return data
