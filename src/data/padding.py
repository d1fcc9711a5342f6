"""Stored rows -> padded arrays of static shape: what training batches and evaluation reads share. Features are
standardised with the training split's statistics (meta.json); a modality's columns and length budget come from its
spec (src/modality.py)."""
from __future__ import annotations

from typing import Dict

import numpy as np

from src.config import DataConfig
from src.data.records import PreparedData, decode_features
from src.modality import BOX_DIM, SPECS

# the shard columns a padded row is made of: the index, each modality's stored columns, the labels
READ_COLUMNS = ["index"] + [c for spec in SPECS.values() for c in spec.stored] + ["labels", "n_labels"]


class Padder:
    """pad(rows) -> {column: padded array}; rows are READ_COLUMNS lists (features as stored float16 bytes, or float32
    arrays extracted from a file at inference time)."""

    def __init__(self, data: PreparedData, cfg: DataConfig):
        self.cfg = cfg
        self.num_labels = max(1, len(data.labels))  # a static [B, classes] column even for an unlabelled set
        self.image_dim, self.audio_dim, self.top_k = data.image_dim, data.audio_dim, data.mrc_top_k
        self.standardizers = {m: data.standardizer(m) for m in ("image", "audio")}
        ids = data.meta["text"]["special_ids"]
        self.pad_id, self.cls, self.sep = ids["[PAD]"], ids["[CLS]"], ids["[SEP]"]

    def __call__(self, size: int, index, text_ids, n_text, image_feat, image_boxes, mrc_ids, mrc_probs, n_regions,
                 audio_feat, n_audio, labels=None, n_labels=None) -> Dict[str, np.ndarray]:
        """`size` rows (the rows given, then padding rows: index -1, row_valid 0)."""
        cfg, n, k = self.cfg, len(index), self.top_k
        lt, nv, na = cfg.max_text_len, cfg.max_regions, cfg.max_audio_tokens
        out = {
            "index": np.full(size, -1, np.int32), "row_valid": np.zeros(size, np.float32),
            "text_ids": np.full((size, lt), self.pad_id, np.int32), "text_mask": np.zeros((size, lt), np.float32),
            "image_feat": np.zeros((size, nv, self.image_dim), np.float32),
            "image_boxes": np.zeros((size, nv, BOX_DIM), np.float32), "image_mask": np.zeros((size, nv), np.float32),
            "mrc_ids": np.zeros((size, nv, k), np.int32), "mrc_probs": np.zeros((size, nv, k), np.float32),
            "audio_feat": np.zeros((size, na, self.audio_dim), np.float32),
            "audio_mask": np.zeros((size, na), np.float32),
            "labels": np.zeros((size, self.num_labels), np.float32),  # multi-hot
        }
        out["text_ids"][:, 0] = self.cls
        out["text_mask"][:, 0] = 1.0  # [CLS] heads the joint sequence even when a row has no text
        for i in range(n):
            out["index"][i], out["row_valid"][i] = index[i], 1.0
            t = np.reshape(text_ids[i], -1)[:min(int(n_text[i]), lt - 2)]
            if len(t):
                out["text_ids"][i, 1:len(t) + 1] = t
                out["text_ids"][i, len(t) + 1] = self.sep
                out["text_mask"][i, :len(t) + 2] = 1.0
            r = min(int(n_regions[i]), nv)
            if r:
                out["image_feat"][i, :r] = self.features("image", image_feat[i], r, self.image_dim)
                out["image_boxes"][i, :r] = np.reshape(image_boxes[i], -1)[:r * BOX_DIM].reshape(r, BOX_DIM)
                out["mrc_ids"][i, :r] = np.reshape(mrc_ids[i], -1)[:r * k].reshape(r, k)
                out["mrc_probs"][i, :r] = np.reshape(mrc_probs[i], -1)[:r * k].reshape(r, k)
                out["image_mask"][i, :r] = 1.0
            a = min(int(n_audio[i]), na)
            if a:
                out["audio_feat"][i, :a] = self.features("audio", audio_feat[i], a, self.audio_dim)
                out["audio_mask"][i, :a] = 1.0
            if labels is not None:
                out["labels"][i, np.reshape(labels[i], -1)[:int(n_labels[i])]] = 1.0
        return out

    def features(self, modality: str, stored, n: int, dim: int) -> np.ndarray:
        """The first n feature rows of one sample, standardised: stored float16 bytes, or a float32 array (features
        extracted from a file at inference time, rounded as stored ones are)."""
        if isinstance(stored, np.ndarray) and stored.dtype == np.float32:
            x = as_stored(np.reshape(stored, -1)[:n * dim].reshape(n, dim))
        else:
            x = decode_features(stored, n, dim)
        return standardize(x, self.standardizers[modality])


def read_padded(data: PreparedData, cfg: DataConfig, split: str, limit: int = 0) -> Dict[str, np.ndarray]:
    """Every sample of `split` (or the first `limit`) as padded arrays, in the order of its shards (the `index`
    column gives each one's position in the split): the evaluation reader (no batching, no masking, no shuffling)."""
    import mindspore.dataset as ds
    reader = ds.MindDataset(data.files(split), columns_list=READ_COLUMNS, shuffle=False)
    rows = []
    for row in reader.create_tuple_iterator(num_epochs=1, output_numpy=True):
        if 0 < limit <= len(rows):
            break
        rows.append(row)
    columns = [[row[k] for row in rows] for k in range(len(READ_COLUMNS))]
    return Padder(data, cfg)(len(rows), *columns)


def as_stored(features: np.ndarray) -> np.ndarray:
    """Fresh features rounded to float16, as preparation stores them, so that a file seen at inference gives the
    model what training gave it."""
    return np.asarray(features, np.float16).astype(np.float32)


def standardize(features: np.ndarray, stats) -> np.ndarray:
    """Features -> model inputs: (x - mean) / std of the training split (`PreparedData.standardizer`; None:
    unchanged)."""
    return features if stats is None else (features - stats[0]) * stats[1]


def modalities_present(b: dict) -> np.ndarray:
    """[B, 3] bool: which modalities each row has (text: a piece after [CLS]; image, audio: a first token)."""
    return np.stack([b[spec.mask][:, 1 if name == "text" else 0] > 0 for name, spec in SPECS.items()], 1)
