"""The dVAE's input pipeline: the RGB thumbnails that preparation keeps with every image sample
(`prepare.image.thumb_size`), as float batches [B, S, S, 3] in [0, 1] (channel-last, as stored).

Only samples with a thumbnail take part (a sample without an image, or with precomputed .npz regions, has none). The
epoch order over them is a function of (seed, epoch), ranks take disjoint slices of it, and a resumed run starts at
the batch it stopped at, as in `src/data/pipeline.py`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from src.config import ConfigError, DataConfig
from src.data.pipeline import epoch_indices
from src.data.records import PreparedData, open_prepared

THUMB_COLUMNS = ["images", "row_weight"]


def thumb_size(data: PreparedData) -> int:
    size = data.meta["prepare"]["image"].get("thumb_size", 0)
    if size <= 0:
        raise ConfigError(f"{data.root} was prepared without image thumbnails (prepare.image.thumb_size 0); "
                          "prepare it again with a thumb_size (64 in the paper) for the dVAE")
    return size


def samples_with_thumbnails(data: PreparedData, split: str) -> np.ndarray:
    """Sample indices of `split` that have an image thumbnail, in split order."""
    sizes = data.read_columns(split, ["n_regions"])["n_regions"]
    return np.flatnonzero(np.asarray(sizes) > 0)


class ThumbnailBatch:
    """Rows of `image_thumb` bytes -> (images [B, S, S, 3] float32 in [0, 1], row_weight [B]: 0 for a row with no
    thumbnail)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image_thumb, batch_info=None):
        images = np.zeros((len(image_thumb), self.size, self.size, 3), np.float32)
        weight = np.zeros(len(image_thumb), np.float32)
        for i, raw in enumerate(image_thumb):
            pixels = np.frombuffer(raw.tobytes() if hasattr(raw, "tobytes") else raw, np.uint8)
            if pixels.size == self.size * self.size * 3:
                images[i] = pixels.reshape(self.size, self.size, 3) / np.float32(255.0)
                weight[i] = 1.0
        return images, weight


def thumbnail_dataset(data: PreparedData, cfg: DataConfig, split: str, indices: np.ndarray, batch_size: int,
                      drop_remainder: bool):
    import mindspore.dataset as ds
    dataset = ds.MindDataset(data.files(split), columns_list=["image_thumb"],
                             sampler=ds.SubsetSampler(indices.tolist()))
    return dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_workers=max(1, cfg.workers),
                         per_batch_map=ThumbnailBatch(thumb_size(data)), input_columns=["image_thumb"],
                         output_columns=THUMB_COLUMNS)


def thumbnail_training_data(cfg: DataConfig, num_shards: int = 1, shard_id: int = 0):
    """(prepared data, make_dataset(epoch, start_batch), batches per epoch) for `src.train.trainer.fit`."""
    if not cfg.path:
        raise ConfigError("data.path is empty: point it at a prepared dataset (scripts/prepare_data.sh)")
    data = open_prepared(cfg.path)
    thumb_size(data)
    usable = samples_with_thumbnails(data, cfg.train_split)
    per_epoch = len(usable) // num_shards // cfg.batch_size
    if per_epoch < 1:
        raise ConfigError(f"{cfg.path} [{cfg.train_split}]: {len(usable)} images give this rank no batch of "
                          f"{cfg.batch_size}")

    def make_dataset(epoch: int, start_batch: int):
        order = usable[epoch_indices(len(usable), cfg.seed, epoch, cfg.shuffle, num_shards, shard_id)]
        return thumbnail_dataset(data, cfg, cfg.train_split, order[start_batch * cfg.batch_size:], cfg.batch_size,
                                 drop_remainder=True)

    return data, make_dataset, per_epoch


def load_thumbnails(data: PreparedData, split: str, limit: int = 0, batch_size: int = 64,
                    cfg: Optional[DataConfig] = None) -> tuple:
    """(sample indices, images [N, S, S, 3]) of every sample of `split` with a thumbnail (the first `limit` > 0)."""
    usable = samples_with_thumbnails(data, split)
    usable = usable[:limit] if limit > 0 else usable
    if len(usable) == 0:
        raise ConfigError(f"{data.root} [{split}] has no image thumbnails")
    batches = list(thumbnail_dataset(data, cfg or DataConfig(), split, usable, batch_size, False)
                   .create_tuple_iterator(num_epochs=1, output_numpy=True))
    images, real = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]) > 0
    if not real.any():
        raise ConfigError(f"{data.root} [{split}] has no image thumbnails")
    return usable[real], images[real]  # an image given as precomputed .npz regions has regions but no thumbnail
