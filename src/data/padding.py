"""Stored rows -> padded arrays of static shape: what training batches and evaluation reads share. Features are
standardised with the training split's statistics (meta.json); a modality's columns and length budget come from its
spec (src/modality.py)."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from src.config import DataConfig
from src.data.records import PreparedData, decode_features
from src.modality import BOX_DIM, SPECS

# the shard columns a padded row is made of: the index, each modality's stored columns, the labels
READ_COLUMNS = ["index"] + [c for spec in SPECS.values() for c in spec.stored] + ["labels", "n_labels"]


class Padder:
    """pad(size, rows) -> {column: padded array}: `rows` maps each READ_COLUMNS name to its values, one per row
    (features as stored float16 bytes, or float32 arrays extracted from a file at inference time); a modality's
    columns are padded by its kind (PAD_KINDS)."""

    def __init__(self, data: PreparedData, cfg: DataConfig):
        self.cfg = cfg
        self.num_labels = max(1, len(data.labels))  # a static [B, classes] column even for an unlabelled set
        self.lengths = {m: getattr(cfg, spec.budget) for m, spec in SPECS.items()}
        self.dims = {m: data.feature_dim(m) for m, spec in SPECS.items() if spec.has_features}
        # a regions modality's stored class targets (between its boxes and its count): their top-k width
        self.top_k = {m: data.meta[m]["mrc"]["top_k"] for m, spec in SPECS.items()
                      if spec.class_columns}
        self.standardizers = {m: data.standardizer(m) for m in self.dims}
        ids = data.meta["text"]["special_ids"]
        self.pad_id, self.cls, self.sep = ids["[PAD]"], ids["[CLS]"], ids["[SEP]"]

    def __call__(self, size: int, rows: Dict[str, Sequence]) -> Dict[str, np.ndarray]:
        """`size` rows (the rows given, then padding rows: index -1, row_valid 0)."""
        n = len(rows["index"])
        out = {"index": np.full(size, -1, np.int32), "row_valid": np.zeros(size, np.float32),
               "labels": np.zeros((size, self.num_labels), np.float32)}  # multi-hot
        out["index"][:n], out["row_valid"][:n] = rows["index"], 1.0
        for spec in SPECS.values():
            out.update(PAD_KINDS[spec.kind](self, spec, rows, size))
        if rows.get("labels") is not None:
            for i in range(n):
                out["labels"][i, np.reshape(rows["labels"][i], -1)[:int(rows["n_labels"][i])]] = 1.0
        return out

    def features(self, modality: str, stored, n: int) -> np.ndarray:
        """The first n feature rows of one sample, standardised: stored float16 bytes, or a float32 array (features
        extracted from a file at inference time, rounded as stored ones are)."""
        dim = self.dims[modality]
        if isinstance(stored, np.ndarray) and stored.dtype == np.float32:
            x = as_stored(np.reshape(stored, -1)[:n * dim].reshape(n, dim))
        else:
            x = decode_features(stored, n, dim)
        return standardize(x, self.standardizers[modality])


def pad_tokens(padder: Padder, spec, rows, size: int) -> Dict[str, np.ndarray]:
    """Word pieces: [CLS] pieces [SEP], padded; [CLS] heads the joint sequence even when a row has no text."""
    (ids_column, mask_column), (stored, count) = spec.columns, spec.stored
    length = padder.lengths[spec.name]
    ids, mask = np.full((size, length), padder.pad_id, np.int32), np.zeros((size, length), np.float32)
    ids[:, 0], mask[:, 0] = padder.cls, 1.0
    for i in range(len(rows["index"])):
        pieces = np.reshape(rows[stored][i], -1)[:min(int(rows[count][i]), length - 2)]
        if len(pieces):
            ids[i, 1:len(pieces) + 1], ids[i, len(pieces) + 1] = pieces, padder.sep
            mask[i, :len(pieces) + 2] = 1.0
    return {ids_column: ids, mask_column: mask}


def pad_regions(padder: Padder, spec, rows, size: int) -> Dict[str, np.ndarray]:
    """Region features and boxes (and, when stored, each region's top-k class ids and probabilities), padded."""
    (feat_column, boxes_column, mask_column), (feat, boxes, count) = spec.columns, spec.stored[:2] + spec.stored[-1:]
    classes = spec.class_columns
    length, name = padder.lengths[spec.name], spec.name
    out = {feat_column: np.zeros((size, length, padder.dims[name]), np.float32),
           boxes_column: np.zeros((size, length, BOX_DIM), np.float32),
           mask_column: np.zeros((size, length), np.float32)}
    k = padder.top_k.get(name, 0)
    for column, dtype in zip(classes, (np.int32, np.float32)):  # the class ids, then their probabilities
        out[column] = np.zeros((size, length, k), dtype)
    for i in range(len(rows["index"])):
        r = min(int(rows[count][i]), length)
        if r:
            out[feat_column][i, :r] = padder.features(name, rows[feat][i], r)
            out[boxes_column][i, :r] = np.reshape(rows[boxes][i], -1)[:r * BOX_DIM].reshape(r, BOX_DIM)
            for column in classes:
                out[column][i, :r] = np.reshape(rows[column][i], -1)[:r * k].reshape(r, k)
            out[mask_column][i, :r] = 1.0
    return out


def pad_frames(padder: Padder, spec, rows, size: int) -> Dict[str, np.ndarray]:
    """Features in time order, padded (or cut) to the modality's budget."""
    (feat_column, mask_column), (feat, count) = spec.columns, spec.stored
    length, name = padder.lengths[spec.name], spec.name
    out = {feat_column: np.zeros((size, length, padder.dims[name]), np.float32),
           mask_column: np.zeros((size, length), np.float32)}
    for i in range(len(rows["index"])):
        a = min(int(rows[count][i]), length)
        if a:
            out[feat_column][i, :a] = padder.features(name, rows[feat][i], a)
            out[mask_column][i, :a] = 1.0
    return out


# modality kind -> how its stored columns become padded model inputs (a new kind adds its function here)
PAD_KINDS = {"tokens": pad_tokens, "regions": pad_regions, "frames": pad_frames}


def empty_row(index: int = 0) -> Dict[str, np.ndarray]:
    """A stored row with no input of any modality (every count 0): what a row built from files starts from."""
    row = {c: np.zeros(0, np.float32) for spec in SPECS.values() for c in spec.stored[:-1]}
    return {"index": index, **row, **{spec.stored[-1]: 0 for spec in SPECS.values()}}


def stack_rows(rows) -> Dict[str, list]:
    """Rows (dicts of stored columns) -> {column: [value of each row]}, as Padder reads them."""
    return {c: [row[c] for row in rows] for c in rows[0]}


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
    columns = {c: [row[k] for row in rows] for k, c in enumerate(READ_COLUMNS)}
    return Padder(data, cfg)(len(rows), columns)


def as_stored(features: np.ndarray) -> np.ndarray:
    """Fresh features rounded to float16, as preparation stores them, so that a file seen at inference gives the
    model what training gave it."""
    return np.asarray(features, np.float16).astype(np.float32)


def standardize(features: np.ndarray, stats) -> np.ndarray:
    """Features -> model inputs: (x - mean) / std of the training split (`PreparedData.standardizer`; None:
    unchanged)."""
    return features if stats is None else (features - stats[0]) * stats[1]


def modalities_present(b: dict) -> np.ndarray:
    """[B, modalities] bool: which modalities each row has (text: a piece after [CLS]; others: a first token)."""
    return np.stack([b[spec.mask][:, 1 if spec.kind == "tokens" else 0] > 0 for spec in SPECS.values()], 1)
