"""The graph compile cache, on for every entry point: a second start of the same recipe loads its compiled graphs.

MindSpore's own cache (MS_COMPILER_CACHE_*) numbers the graphs of a process in compile order and checks only its
Python files: measured here, a second start with another scale constant, another layer count or another input shape
reused the first start's graphs and returned the first one's numbers. So the cache folder is ours, one per recipe,
named by a digest of everything a graph depends on: the entry point and its arguments, the resolved config, the
data's meta.json, the source tree and the MindSpore version. A recipe that changes anything compiles afresh in its
own folder.

OPT_COMPILE_CACHE=off turns it off; OPT_COMPILE_CACHE=<dir> moves the root (default ~/.cache/opt_mindspore/compile).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "OPT_COMPILE_CACHE"
KEEP = 24  # recipe folders kept (a demo run makes about ten)
_used = False  # an entry point of this process has enabled the cache
_lock = None   # the open, locked file that marks this process's recipe folder as in use


def cache_root() -> Path | None:
    value = os.environ.get(ENV, "")
    if value.lower() in ("off", "0", "false", "no"):
        return None
    return Path(value) if value else Path.home() / ".cache" / "opt_mindspore" / "compile"


def source_digest() -> str:
    """A digest of the code that builds the graphs: every .py file under src/ and the entry scripts."""
    h = hashlib.sha256()
    files = sorted(ROOT.glob("src/**/*.py")) + sorted(ROOT.glob("*.py"))
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def recipe_key(entry: str, cfg, options: dict = None) -> str:
    """The digest naming a recipe's cache: entry point, graph-shaping options, resolved config, data meta.json,
    source tree, MindSpore version."""
    import mindspore as ms
    from src.config import to_dict
    meta = Path(cfg.data.path) / "meta.json" if cfg.data.path else None
    config = to_dict(cfg)
    config["train"].pop("output_dir", None)  # where a run writes does not shape its graphs
    config["data"].pop("path", None)         # the data counts through its meta.json (shapes, counts, fingerprint)
    parts = {"entry": entry, "options": options or {}, "config": config,
             "meta": meta.read_text(encoding="utf-8") if meta and meta.is_file() else "",
             "source": source_digest(), "mindspore": ms.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def graph_options(args, ignored=()) -> dict:
    """An entry point's arguments, but the `ignored` ones that cannot shape a graph (an output path). Every other
    value counts, file inputs included: MindSpore's cache checks neither input shapes nor Python constants (measured:
    a graph cached for 2 rows answered for 3), so an input of another length must not reuse it."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in ignored}


def enable_compile_cache(entry: str, cfg, options: dict = None, rank: int = 0, keep: int = KEEP) -> Path | None:
    """Point MindSpore's compile cache at this recipe's folder (created on first use, the `keep` most recently used
    folders kept); returns it, or None when OPT_COMPILE_CACHE=off. Call before the first graph compiles.

    MindSpore names cached graphs by their compile order in the process, so only the first entry point of a process
    may use the cache: a second one (a test or a notebook calling train.main twice) runs with it off. So does a
    process whose recipe folder another process of the same rank holds (two identical runs at once): the holder
    writes, this one compiles. A damaged cached graph is reported by MindSpore, compiled again and rewritten."""
    import mindspore as ms
    global _used
    root = cache_root()
    if root is None or _used:
        ms.set_context(enable_compile_cache=False)
        return None
    _used = True
    folder = root / recipe_key(entry, cfg, options)
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)  # most recently used
    prune(root, keep, current=folder)
    if not _hold(folder / f".lock_rank{rank}"):
        ms.set_context(enable_compile_cache=False)
        return None
    ms.set_context(enable_compile_cache=True, compile_cache_path=str(folder))
    return folder


def _hold(path: Path) -> bool:
    """Take an exclusive lock on `path` for the rest of the process (released by the OS when it ends)."""
    global _lock
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _lock = handle
    return True


def prune(root: Path, keep: int, current: Path) -> None:
    """Delete all but the `keep` most recently used recipe folders (a cache, never the only copy of anything)."""
    folders = sorted((f for f in root.iterdir() if f.is_dir() and f != current), key=lambda f: f.stat().st_mtime,
                     reverse=True)
    for old in folders[keep - 1:]:
        shutil.rmtree(old, ignore_errors=True)
