"""A prepared split held in memory as padded model inputs, and fixed-size batched inference over any mix of its rows.

Evaluation recombines modalities of different samples (a query's text with a candidate's image), so it needs random
access to every row; a 5,000-item split of the demo shapes takes about 250 MB. Every forward pass has the same batch
size (the last batch is padded and its padding dropped), so each network compiles once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Sequence, Tuple

import mindspore as ms
import numpy as np

from src.config import DataConfig
from src.data.content import fingerprints
from src.data.padding import Padder, empty_row, modalities_present, read_padded, stack_rows
from src.modality import BOX_DIM, COLUMNS_OF, INPUT_COLUMNS, MODALITIES, SPECS


@dataclass
class Items:
    inputs: Dict[str, np.ndarray]   # INPUT_COLUMNS -> [N, ...]
    index: np.ndarray               # [N] position of each item in its split
    labels: np.ndarray              # [N, classes] multi-hot

    def __len__(self) -> int:
        return len(self.index)

    def present(self) -> np.ndarray:
        """[N, 3] bool: which of text, image, audio each item has."""
        return modalities_present(self.inputs)

    def compose(self, rows: Dict[str, np.ndarray]) -> Tuple[np.ndarray, ...]:
        """Model inputs whose modality m comes from items rows[m] (modalities not named come from the first one
        named; the model leaves them out anyway)."""
        fallback = next(iter(rows.values()))
        source = {c: rows.get(m, fallback) for m, cols in COLUMNS_OF.items() for c in cols}
        return tuple(self.inputs[c][source[c]] for c in INPUT_COLUMNS)

    def mean_features(self, modality: str) -> np.ndarray:
        """[N, D] the input features of image or audio (EfficientNet regions, Whisper frames) averaged over each
        item's valid tokens."""
        feat, mask = self.inputs[f"{modality}_feat"], self.inputs[f"{modality}_mask"][..., None]
        return (feat * mask).sum(1) / np.maximum(mask.sum(1), 1.0)

    def subset(self, rows: np.ndarray) -> "Items":
        return Items({c: v[rows] for c, v in self.inputs.items()}, self.index[rows], self.labels[rows])

    def sample(self, n: int, seed: int) -> "Items":
        """`n` items drawn without replacement (seeded), kept in their order; all of them when n is 0 or covers the
        split. Not the first n: prepared splits keep the manifest's order, grouped by source (the demo's first 500
        training items carry 29 of its 170 labels)."""
        if n <= 0 or n >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))


def load_items(data, cfg: DataConfig, split: str, limit: int = 0) -> Items:
    """Every item of `split` (or its first `limit`) as padded inputs, in the order of its shards (`read_padded`)."""
    arrays = read_padded(data, cfg, split, limit)
    return Items({c: arrays[c] for c in INPUT_COLUMNS}, arrays["index"], arrays["labels"])


def made_up_items(data, cfg: DataConfig, count: int, seed: int = 0) -> Items:
    """`count` items of random inputs shaped as `data`'s, every modality present at its full length: what an export
    checks its graphs on, so that it needs the data's settings only (a run's data_settings), not its samples."""
    rng = np.random.default_rng(seed)
    first_word = max(data.meta["text"]["special_ids"].values()) + 1
    rows = []
    for i in range(count):
        row = empty_row(i)
        for m, spec in SPECS.items():
            n = getattr(cfg, spec.budget) - spec.reserved
            if spec.kind == "tokens":
                words = data.meta["text"]["vocab_size"]
                row[spec.stored[0]] = rng.integers(first_word, words, n).astype(np.int32)
            else:
                row[spec.stored[0]] = rng.standard_normal(n * data.feature_dim(m)).astype(np.float32)
            if spec.kind == "regions":
                row[spec.stored[1]] = rng.random(n * BOX_DIM).astype(np.float32)
                top_k = data.meta[m]["mrc"]["top_k"] if spec.class_columns else 0
                row.update({c: np.zeros(n * top_k, np.int32 if c.endswith("_ids") else np.float32)
                            for c in spec.class_columns})
            row[spec.stored[-1]] = n
        rows.append(row)
    padded = Padder(data, cfg)(count, stack_rows(rows))
    return Items({c: padded[c] for c in INPUT_COLUMNS}, padded["index"], padded["labels"])


def fixed_batches(count: int, batch_size: int) -> Iterator[Tuple[int, np.ndarray]]:
    """Rows 0..count-1 in batches of exactly `batch_size`: (rows that are real, row indices), the last batch padded
    with copies of its first row (their outputs are to be dropped)."""
    for start in range(0, count, batch_size):
        rows = np.arange(start, min(start + batch_size, count))
        yield len(rows), np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])


def run_batched(cell: ms.nn.Cell, count: int, batch_size: int,
                make_inputs: Callable[[np.ndarray], Sequence[np.ndarray]]) -> Tuple[np.ndarray, ...]:
    """Run `cell` over rows 0..count-1 in batches of exactly `batch_size`; make_inputs(rows) builds a batch.
    Returns the cell's outputs (a tuple, even for one) concatenated over the rows."""
    outputs = [real_rows(cell(*(ms.Tensor(x) for x in make_inputs(rows))), real)
               for real, rows in fixed_batches(count, batch_size)]
    return tuple(np.concatenate(parts) for parts in zip(*outputs))


def real_rows(out, real: int) -> list:
    """The first `real` rows of each of a graph's outputs, copied to the host; the graph's tensors are dropped before
    the next call (why: src/train/memory.py, host_arrays; inference may not import training)."""
    return [np.array(o.asnumpy()[:real]) for o in (out if isinstance(out, tuple) else (out,))]


def modalities_of(names: Sequence[str]) -> Tuple[str, ...]:
    """Modality names in the model's fixed order (text, image, audio)."""
    return tuple(m for m in MODALITIES if m in names)


def content_codes(items: Items, modalities: Sequence[str]) -> np.ndarray:
    """[N] int: equal for items whose `modalities` are identical inputs."""
    return np.unique(fingerprints([items.inputs[c] for m in modalities for c in COLUMNS_OF[m]]),
                     return_inverse=True)[1]
