"""The training input pipeline: `MindDataset` over the shards -> per-rank epoch order -> padded batches of static
shape (src/data/padding.py) -> the objective's columns (src/data/objectives.py: masks and matching negatives for
pre-training, views for retrieval and text generation).

Order and corruption are functions of (seed, epoch, sample index) only, so the same seed and epoch give the same
batches whatever the worker count, and a run resumed at batch k of epoch e sees exactly what it would have seen.
Ranks take disjoint slices of each epoch's permutation (MindDataset's own `num_shards` pads shards by repeating samples
and cannot start mid-epoch, so the split is done here and handed to it as a sampler). Evaluation reads a split with
`src.data.padding.read_padded` instead: no batching, no corruption.
"""
from __future__ import annotations

import inspect
from typing import Optional

import numpy as np

from src.config import ConfigError, DataConfig
from src.data.objectives import make_objective
from src.data.padding import READ_COLUMNS, Padder
from src.data.records import PreparedData, open_prepared


def epoch_indices(count: int, seed: int, epoch: int, shuffle: bool, num_shards: int = 1, shard_id: int = 0,
                  drop_last: bool = True) -> np.ndarray:
    """This rank's sample indices for one epoch. With drop_last every rank gets the same number (the few samples that
    do not divide evenly wait for a later epoch's permutation); without it the ranks cover every sample once."""
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id {shard_id} is outside 0..{num_shards - 1}")
    order = np.random.default_rng([seed, epoch]).permutation(count) if shuffle else np.arange(count)
    if drop_last:
        order = order[:count - count % num_shards]
    return order[shard_id::num_shards]


class Collator:
    """Stored rows of a training batch -> the objective's columns: padded, then the objective's corruption or views,
    with a random generator seeded by (seed, epoch, the batch's first sample)."""

    def __init__(self, data: PreparedData, cfg: DataConfig, epoch: int, objective):
        self.cfg, self.epoch, self.objective = cfg, epoch, objective
        self.pad = Padder(data, cfg)

    # the dataset checks a per-batch map's arity: one parameter per READ_COLUMNS column, then its batch info
    __signature__ = inspect.Signature([inspect.Parameter(c, inspect.Parameter.POSITIONAL_ONLY)
                                       for c in READ_COLUMNS + ["batch_info"]])

    def __call__(self, *columns):
        rows = dict(zip(READ_COLUMNS, columns))
        batch = self.pad(len(rows["index"]), rows)
        rng = np.random.default_rng([self.cfg.seed, self.epoch, int(batch["index"][0])])
        out = self.objective(batch, rng)
        return tuple(out[c] for c in self.objective.columns)


# batches (and rows) each pipeline stage queues ahead of the next: the pipeline is far faster than a train step, and
# MindSpore's default of 16 held a queue of full batches in memory for nothing (docs/performance.md, Memory)
PREFETCH = 2


def create_dataset(data, cfg: DataConfig, split: Optional[str] = None, epoch: int = 0, num_shards: int = 1,
                   shard_id: int = 0, start_batch: int = 0, objective: str = "pretrain", **options):
    """One epoch of training batches for this rank, starting at batch `start_batch` (for exact resume), carrying the
    columns of `objective` (src/data/objectives.py; `options` go to it: sources, codes, starts)."""
    import mindspore.dataset as ds
    ds.config.set_prefetch_size(PREFETCH)
    data = data if isinstance(data, PreparedData) else open_prepared(data)
    split = split or cfg.train_split
    indices = epoch_indices(data.count(split), cfg.seed, epoch, cfg.shuffle, num_shards, shard_id, drop_last=True)
    indices = indices[start_batch * cfg.batch_size:]
    if len(indices) < cfg.batch_size:
        raise ConfigError(f"split '{split}' gives this rank {len(indices)} samples, fewer than one batch of "
                          f"{cfg.batch_size} (data.batch_size)")
    dataset = ds.MindDataset(data.files(split), columns_list=READ_COLUMNS, sampler=ds.SubsetSampler(indices.tolist()))
    target = make_objective(objective, data, cfg, **options)
    return dataset.batch(cfg.batch_size, drop_remainder=True, num_parallel_workers=max(1, cfg.workers),
                         per_batch_map=Collator(data, cfg, epoch, target), input_columns=READ_COLUMNS,
                         output_columns=target.columns)


def steps_per_epoch(data, cfg: DataConfig, split: Optional[str] = None, num_shards: int = 1) -> int:
    data = data if isinstance(data, PreparedData) else open_prepared(data)
    return data.count(split or cfg.train_split) // num_shards // cfg.batch_size


def open_training_data(cfg: DataConfig) -> PreparedData:
    """The prepared data a task trains on (data.path), with a warning for audio longer than the model hears."""
    if not cfg.path:
        raise ConfigError("data.path is empty: point it at a prepared dataset (scripts/prepare_data.sh)")
    data = open_prepared(cfg.path)
    warn_audio_cut(data, cfg.train_split, cfg.max_audio_tokens)
    return data


def training_data(data: PreparedData, cfg: DataConfig, objective: str, num_shards: int = 1, shard_id: int = 0,
                  **options):
    """What a trainable task needs from its data (open_training_data): (make_dataset(epoch, start_batch), batches
    per epoch for this rank), the batches carrying the columns of `objective`; `options` go to the objective as they
    are (src/data/objectives.py)."""
    def make_dataset(epoch: int, start_batch: int):
        return create_dataset(data, cfg, epoch=epoch, num_shards=num_shards, shard_id=shard_id,
                              start_batch=start_batch, objective=objective, **options)

    return make_dataset, steps_per_epoch(data, cfg, num_shards=num_shards)


def decoder_starts(data: PreparedData, split: str) -> np.ndarray:
    """[samples] int32: the text decoder's start piece of each sample of `split`, by its language."""
    from src.data.tokenizer import decoder_start_ids
    langs = data.read_columns(split, ["lang"])["lang"]
    return decoder_start_ids(data.vocab_path, langs, data.meta["text"]["special_ids"]["[CLS]"])


def warn_audio_cut(data: PreparedData, split: str, max_tokens: int) -> int:
    """Say how many samples of `split` have more audio than the model's max_audio_tokens (the batches keep only their
    start); returns that count."""
    lengths = np.array(data.read_columns(split, ["n_audio"])["n_audio"])
    cut = int((lengths > max_tokens).sum())
    if cut:
        seconds = data.audio_token_seconds()
        lost = (lengths[lengths > max_tokens] - max_tokens).sum() * seconds
        print(f"warning: {data.root} [{split}]: {cut} of {len(lengths)} samples have more than "
              f"data.max_audio_tokens={max_tokens} audio tokens ({max_tokens * seconds:.2f} s); "
              f"{lost:.0f} s of audio in all is cut", flush=True)
    return cut
