"""The prepared-dataset format: MindRecord shards per split plus `meta.json`, and the checks that guard reading it.

    OUT_DIR/meta.json                    feature dims, tokenizer, labels, counts, skipped samples, file sizes
    OUT_DIR/vocab.txt                    the WordPiece vocab the text ids refer to
    OUT_DIR/codebook.npy                 k-means centroids of the MRC targets (when not from a detector)
    OUT_DIR/<split>/data.mindrecord<k>   shard k of a split (and its .db index)

A directory is only ever read when its meta.json says it is complete and every shard has the size meta.json recorded:
an interrupted or damaged output is refused, never half-read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from src.files import write_text_atomic
from src.modality import MODALITIES, SPECS

FORMAT_VERSION = 2  # 2: features stored as float16, MRC targets as top-k class distributions
META = "meta.json"
FEATURES_RECORD = "features.json"  # written by scripts/extract_features.sh beside its manifest: what made the .npz
PAGE_BYTES = 1 << 22  # a row (one sample) must fit in a page; the 32 MB default bloats small shards

# Arrays are stored flat with their row counts (MindRecord reads a zero-length array back as a scalar); the row
# widths are in meta.json.
def stored_schema(spec) -> dict:
    """The shard columns of one modality, by its kind: word pieces with their count; region features (float16 bytes
    [n, feature_dim], raw: standardised when read) with their boxes, the class ids and probabilities of each region's
    MRC target ([n, top_k], when the kind stores them) and their count; frame features (float16 bytes) and count."""
    *columns, count = spec.stored
    types = {"tokens": [{"type": "int32", "shape": [-1]}],
             "regions": [{"type": "bytes"}, {"type": "float32", "shape": [-1]}, {"type": "int32", "shape": [-1]},
                         {"type": "float32", "shape": [-1]}],
             "frames": [{"type": "bytes"}]}[spec.kind]
    return {**dict(zip(columns, types)), count: {"type": "int32"}}


SCHEMA = {
    "index": {"type": "int64"},          # position in its split: the sampler's index
    "id": {"type": "string"},
    "text": {"type": "string"},
    "lang": {"type": "string"},
    **{column: kind for spec in SPECS.values() for column, kind in stored_schema(spec).items()},
    "image_thumb": {"type": "bytes"},    # the dVAE's RGB thumbnail
    "labels": {"type": "int32", "shape": [-1]},
    "n_labels": {"type": "int32"},
}


class DatasetError(RuntimeError):
    """A prepared directory that must not be read (incomplete, damaged, or of another format)."""


@dataclass
class PreparedData:
    root: Path
    meta: dict

    @property
    def splits(self) -> List[str]:
        return list(self.meta["splits"])

    def files(self, split: str) -> List[str]:
        return [str(self.root / f) for f in self._split(split)["files"]]

    def count(self, split: str) -> int:
        return self._split(split)["count"]

    def modalities(self, split: Optional[str] = None) -> Tuple[str, ...]:
        """The modalities that some sample of `split` (default: of any split) has, in the model's order."""
        splits = [self._split(split)] if split else list(self.meta["splits"].values())
        counts = [s["modalities"] for s in splits]
        return tuple(m for m in MODALITIES if any(c.get(m, 0) > 0 for c in counts))

    def read_columns(self, split: str, columns: List[str]) -> Dict[str, list]:
        """Scalar or string columns of every sample of `split`, in split order (no padding, no batching)."""
        import mindspore.dataset as ds
        rows = ds.MindDataset(self.files(split), columns_list=["index"] + columns, shuffle=False)
        out = {c: [None] * self.count(split) for c in columns}
        for row in rows.create_dict_iterator(num_epochs=1, output_numpy=True):
            for c in columns:
                out[c][int(row["index"])] = row[c].item()
        return out

    def text_pieces(self, split: str) -> np.ndarray:
        """Sorted int32 ids of every word piece that occurs in the captions of `split`."""
        import mindspore.dataset as ds
        rows = ds.MindDataset(self.files(split), columns_list=["text_ids"], shuffle=False)
        seen = np.zeros(self.meta["text"]["vocab_size"], bool)
        for row in rows.create_dict_iterator(num_epochs=1, output_numpy=True):
            seen[np.asarray(row["text_ids"], np.int64).ravel()] = True
        return np.flatnonzero(seen).astype(np.int32)

    def audio_token_seconds(self) -> float:
        return self.meta["audio"]["token_seconds"]

    @property
    def mrc_top_k(self) -> int:
        return self.meta["image"]["mrc"]["top_k"]

    def standardizer(self, modality: str):
        """(mean, 1 / std) float32 of `modality`'s features over the training split, or None (no such features)."""
        stats = self.meta[modality].get("standardize")
        if not stats:
            return None
        return np.asarray(stats["mean"], np.float32), (1.0 / np.asarray(stats["std"], np.float64)).astype(np.float32)

    def _split(self, split: str) -> dict:
        if split not in self.meta["splits"]:
            raise DatasetError(f"{self.root}: no split '{split}' (has: {', '.join(self.meta['splits']) or 'none'})")
        return self.meta["splits"][split]

    def feature_dim(self, modality: str) -> int:
        """The width of `modality`'s features in this set."""
        dim = self.meta.get(modality, {}).get("feature_dim")
        if not dim:
            raise DatasetError(f"{self.root}: no {modality} features (prepared without the {modality} modality, or "
                               "no sample has it): prepare the data with it")
        return dim

    @property
    def image_dim(self) -> int:
        return self.meta["image"]["feature_dim"]

    @property
    def audio_dim(self) -> int:
        return self.meta["audio"]["feature_dim"]

    @property
    def vocab_path(self) -> str:
        return str(self.root / self.meta["text"]["vocab_file"])

    @property
    def mrc_classes(self) -> int:
        return self.meta["image"]["mrc"]["num_classes"]

    @property
    def labels(self) -> List[str]:
        return self.meta["labels"]


def open_prepared(root) -> PreparedData:
    """The prepared dataset at `root`, after checking that it is complete and undamaged."""
    root = Path(root)
    meta_path = root / META
    if not meta_path.is_file():
        raise DatasetError(f"{root}: not a prepared dataset (no {META}); run scripts/prepare_data.sh first")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{meta_path}: damaged ({e.msg}); prepare the data again") from None
    if not meta.get("complete") or meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{root}: incomplete or of another format version; prepare the data again")
    for name, size in meta["file_sizes"].items():
        path = root / name
        if not path.is_file() or path.stat().st_size != size:
            raise DatasetError(f"{root}: {name} is missing or damaged (expected {size} bytes); prepare the data again")
    return PreparedData(root, meta)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False))


class SplitWriter:
    """Buffered, sharded MindRecord writer for one split."""

    def __init__(self, path: Path, shards: int, buffer: int = 256):
        from mindspore.mindrecord import FileWriter
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.count, self.buffer = path, 0, buffer
        self._rows: List[dict] = []
        self._writer = FileWriter(str(path), shard_num=shards, overwrite=True)
        self._writer.set_page_size(PAGE_BYTES)
        self._writer.add_schema(SCHEMA, "opt_sample")
        self.shards = shards

    def add(self, row: dict) -> None:
        row["index"] = self.count
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self.buffer:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_raw_data(self._rows)
            self._rows = []

    def commit(self) -> List[Path]:
        self._flush()
        self._writer.commit()
        suffixes = [""] if self.shards == 1 else [str(k) for k in range(self.shards)]
        files = [Path(f"{self.path}{s}") for s in suffixes]
        return files + [Path(f"{f}.db") for f in files]


def encode_features(features: np.ndarray) -> bytes:
    """[N, D] features as stored: float16 bytes (half the size; the standardised values need no more precision)."""
    return np.ascontiguousarray(features, np.float16).tobytes()


def decode_features(stored, n: int, dim: int) -> np.ndarray:
    """The inverse of encode_features: [n, dim] float32."""
    if n == 0:  # MindRecord reads empty bytes back as an arbitrary scalar
        return np.zeros((0, dim), np.float32)
    # a view of the stored buffer (bytes, or the array MindRecord hands over): nothing is copied before the cast
    return np.frombuffer(stored, np.float16, count=n * dim).reshape(n, dim).astype(np.float32)
