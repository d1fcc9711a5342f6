"""Dropout whose masks are a function of (seed, which cell, how many times it has run): resumable randomness.

Which cell: `number_dropouts(net)` (run by the train step) numbers a network's Dropout cells in their order in the
network, so the masks of a run do not depend on what else its process built before (a test suite, a notebook).

MindSpore's dropout kernels keep their random state inside the kernel, out of reach of a checkpoint, so a resumed run
would draw different masks from an uninterrupted one. Here the only state is a call counter held in a Parameter (saved
with the weights): each call reads its uniforms from windows of one fixed random table (built once from the global
seed), at offsets hashed from (cell, counter, window). Reading a window is one slice, about as cheap as the kernel.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import nn, ops

TABLE_SIZE = 1 << 22   # uniforms in the shared table (16 MB)
WINDOW = 1 << 20       # tensors larger than this are covered by several windows at independent offsets
_tables: dict = {}


def random_table(seed: int) -> ms.Tensor:
    """The uniform table for `seed`, one tensor object per seed shared by every Dropout cell."""
    if seed not in _tables:
        _tables[seed] = ms.Tensor(np.random.default_rng([seed, 0x0D0]).random(TABLE_SIZE, dtype=np.float32))
    return _tables[seed]


def _int32(value: int) -> int:
    value %= 1 << 32
    return value - (1 << 32) if value >= 1 << 31 else value


class Dropout(nn.Cell):
    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.salt = 1  # its stream: number_dropouts gives each cell of a network its own
        if p > 0:
            self.table = random_table(ms.get_seed() or 0)
            self.calls = ms.Parameter(ms.Tensor(0, ms.int32), name="dropout_calls", requires_grad=False)

    def construct(self, x):
        if not self.training or self.p == 0:
            return x
        u = self.uniforms(x.size).reshape(x.shape)
        ops.assign_add(self.calls, ms.Tensor(1, ms.int32))
        # a multiply by the scaled 0/1 mask: on CPU 40 % faster than a select, and so is its gradient
        return x * ((u >= self.p).astype(x.dtype) * (1.0 / (1.0 - self.p)))

    def uniforms(self, n: int):
        return counted_uniforms(self.table, self.calls, self.salt, n)


def number_dropouts(net: nn.Cell) -> None:
    """Give the Dropout cells of `net` distinct streams by their order in it (the order a fresh process built them
    in, so runs and checkpoints from before this numbering keep their masks). Call before the graph compiles."""
    cells = (cell for _, cell in net.cells_and_names() if isinstance(cell, Dropout))
    for i, cell in enumerate(cells):
        cell.salt = i * 7919 + 1


def counted_uniforms(table, calls, salt: int, n: int):
    """n uniforms read from `table` at offsets hashed from (salt, the call counter `calls`, window)."""
    windows = (n + WINDOW - 1) // WINDOW
    size = min(n, WINDOW)
    parts = []
    for w in range(windows):
        # a Weyl sequence over calls, shifted per cell and window; int32 arithmetic wraps around
        key = calls * 1640531527 + _int32((salt + w * 104729) * 739982445)
        offset = ops.floor_mod(key, TABLE_SIZE - size + 1)
        parts.append(ops.slice(table, (offset,), (size,)))
    return ops.concat(parts)[:n] if windows > 1 else parts[0]
