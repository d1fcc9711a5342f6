"""One module per objective family. A trainable task's module has LOSS_NAMES and
`build(cfg, num_shards, shard_id) -> (loss cell, make_dataset(epoch, start_batch), batches per epoch)`."""
from __future__ import annotations

import importlib

TRAINABLE = ("pretrain", "retrieval", "caption", "dvae")


def task_module(name: str):
    return importlib.import_module(f"src.tasks.{name}")
