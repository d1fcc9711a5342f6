"""What a run carries of the data it was trained on: RUN/data_settings, a prepared set without samples (the meta's
settings, the vocabulary, the region codebook), so that data for fine-tuning or evaluation is prepared the same way
(`prepare_data.sh --like RUN`) after the training data is gone, and data prepared otherwise is refused before the
first step instead of failing on a shape or, worse, training on inputs the model never saw the like of.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import List, Optional

from src.data.records import META, DatasetError, PreparedData, open_prepared, write_json_atomic

SETTINGS_DIR = "data_settings"
CARRIED_FILES = ("vocab.txt", "codebook.npy")


def save_settings(data: PreparedData, run_dir) -> Path:
    """Write RUN/data_settings from the prepared `data` (replacing an older one whole)."""
    out = Path(run_dir) / SETTINGS_DIR
    tmp = out.parent / f".{SETTINGS_DIR}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sizes = {}
    for name in CARRIED_FILES:
        if (data.root / name).is_file():
            shutil.copyfile(data.root / name, tmp / name)
            sizes[name] = (tmp / name).stat().st_size
    meta = {**data.meta, "splits": {}, "file_sizes": sizes, "skipped": [],
            "trained_on": data.meta.get("trained_on") or str(data.root.resolve()),
            "counts": data.meta.get("counts", {})}
    write_json_atomic(tmp / META, meta)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def run_directory(path) -> Optional[Path]:
    """The run directory of a checkpoint file or a run directory (the one that holds config.yaml), else None."""
    path = Path(path)
    for candidate in (path, path.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def reference_settings(path) -> PreparedData:
    """The preparation settings `path` stands for: a run directory or checkpoint (its data_settings) or a prepared
    set."""
    run = run_directory(path)
    if run is not None:
        if not (run / SETTINGS_DIR / META).is_file():
            raise DatasetError(f"{run} carries no {SETTINGS_DIR} (a run from before they were recorded): use --like "
                               "with the prepared data it was trained on")
        return open_prepared(run / SETTINGS_DIR)
    return open_prepared(path)


def data_or_settings(data_path: str, settings) -> str:
    """`data_path` when it is a prepared set on this machine, else the data settings folder `settings` (a run's or a
    bundle's) when there is one: what a network's shapes and its inputs' features need, so that inference and export
    run without the training data."""
    if (Path(data_path) / META).is_file() or settings is None or not (Path(settings) / META).is_file():
        return data_path
    return str(settings)


def settings_of_run(ckpt) -> Optional[Path]:
    """RUN/data_settings of a checkpoint file or run directory (None when it is in no run directory)."""
    run = run_directory(ckpt)
    return None if run is None else run / SETTINGS_DIR


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def preparation_differences(data: PreparedData, ref: PreparedData) -> List[str]:
    """What tells `data` apart from how `ref` was prepared: the vocabulary, the tokenizer's settings, each shared
    modality's extractor, feature width and standardisation statistics."""
    out = []
    if _digest(Path(data.vocab_path)) != _digest(Path(ref.vocab_path)):
        out.append(f"the vocabulary ({data.meta['text']['vocab_size']} pieces, the run's "
                   f"{ref.meta['text']['vocab_size']})")
    for key in ("lower_case", "chinese"):
        if data.meta["text"].get(key) != ref.meta["text"].get(key):
            out.append(f"text.{key}")
    for m in ("image", "audio"):
        ours, theirs = data.meta.get(m) or {}, ref.meta.get(m) or {}
        if not ours.get("extractor") or not theirs.get("extractor"):
            continue  # a modality one of them lacks: nothing to compare
        for key in ("extractor", "feature_dim", "standardize"):
            if ours.get(key) != theirs.get(key):
                out.append(f"{m} {key.replace('_', ' ')}")
    return out


def check_prepared_like(data: PreparedData, init_from: str) -> None:
    """Refuse (DatasetError, one line) to fine-tune from the run `init_from` on data prepared otherwise than its own.
    A run that carries no settings (or a path that is not a run) is not checked."""
    run = run_directory(init_from) if init_from else None
    if run is None or not (run / SETTINGS_DIR / META).is_file():
        return
    differences = preparation_differences(data, open_prepared(run / SETTINGS_DIR))
    if differences:
        raise DatasetError(f"{data.root} was prepared otherwise than the data of {run} ({', '.join(differences)}): "
                           f"prepare it with scripts/prepare_data.sh ... --like {run}")
