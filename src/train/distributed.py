"""Data-parallel training over several processes: one replica of the model per process, each reading its own shard
of every epoch, gradients averaged across processes before the optimizer step.

A process learns that it is one of several from the launcher's environment:
- `msrun` (GPU, CPU, Ascend) sets MS_WORKER_NUM (and MS_ROLE, MS_SCHED_HOST ...);
- the Ascend rank-table launch sets RANK_TABLE_FILE, RANK_SIZE, RANK_ID and DEVICE_ID.
Without either, training runs as a single process and nothing here communicates.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import ConfigError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job."""
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 writes the run's files (config, train log, checkpoints)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_workers() -> int:
    """How many processes the launcher started (1 when started directly)."""
    for name in ("MS_WORKER_NUM", "RANK_SIZE"):
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"environment variable {name}='{value}' is not a positive process count")
            return int(value)
    return 1


def set_device(device: str) -> None:
    """Pick the device type (empty: MindSpore's default for this install); DEVICE_ID from a rank-table launch picks
    the chip."""
    device_id = os.environ.get("DEVICE_ID", "").strip()
    if device or device_id:
        try:
            ms.set_device(device or ms.get_context("device_target"), int(device_id) if device_id else None)
        except (RuntimeError, ValueError) as e:  # MindSpore's message is pages long; its first line says why
            raise ConfigError(f"train.device={device or 'default'} DEVICE_ID={device_id or '-'}: this MindSpore "
                              f"install cannot use it ({str(e).strip().splitlines()[0]})") from None


def init_data_parallel() -> Ranks:
    """Join the job's communication group and turn on data parallelism (gradient mean over ranks); a single process
    gets Ranks(0, 1) and no communication."""
    if launched_workers() == 1:
        return Ranks()
    from mindspore.communication import get_group_size, get_rank, init
    init()  # HCCL on Ascend, NCCL on GPU, MCCL on CPU: chosen from the device target
    ranks = Ranks(get_rank(), get_group_size())
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=ranks.size)
    return ranks


def data_parallel_size() -> int:
    """The number of replicas gradients are averaged over (1 outside data parallelism)."""
    if ms.get_auto_parallel_context("parallel_mode") != ms.ParallelMode.DATA_PARALLEL:
        return 1
    return ms.get_auto_parallel_context("device_num")


class MeanOverRanks(nn.Cell):
    """A tensor -> its mean over all ranks (the job's losses are logged as global means)."""

    def __init__(self, size: int):
        super().__init__()
        self.sum = ops.AllReduce()
        self.size = size

    def construct(self, x):
        return self.sum(x) / self.size


class MaxOverRanks(nn.Cell):
    """A tensor -> its elementwise maximum over all ranks."""

    def __init__(self):
        super().__init__()
        self.max = ops.AllReduce(ops.ReduceOp.MAX)

    def construct(self, x):
        return self.max(x)


class AnyRank:
    """`any_rank(flag)` -> true on every rank if it is true on any rank. Decisions that end the loop (the time limit)
    must be taken by all ranks at the same step, or the ones that go on wait forever for the ones that stopped."""

    def __init__(self):
        self.max = MaxOverRanks()

    def __call__(self, flag: bool) -> bool:
        return bool(self.max(ms.Tensor([1.0 if flag else 0.0], ms.float32)).asnumpy()[0] > 0)


def parameter_fingerprint(params) -> str:
    """Sum and sum of squares of all parameter values (float64): identical on every rank while the replicas agree."""
    values = [p.asnumpy().astype(np.float64) for p in params]
    return f"sum {sum(v.sum() for v in values):.12e} sumsq {sum((v * v).sum() for v in values):.12e}"
