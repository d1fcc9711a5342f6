"""Mixed precision for training (`train.amp_level`): O0 runs everything in float32; O2 runs the network in float16
but for what needs float32's range and precision.

Under O2 the cells below the loss cell run in float16 (`Cell.to_float`: their inputs and the parameters their
primitives read are cast to float16; the parameters themselves, their gradients and the optimizer state stay float32),
except cells that keep float32: those whose class sets `keep_float32` (the project's LayerNorm, Softmax and loss
cells, see `src/model/primitives.py` and `src/model/losses.py`) and MindSpore's norms, softmaxes and losses. The loss
cell itself is not cast: the losses it sums and stacks, and the batch columns it compares predictions with (regression
targets, soft labels), stay float32.

MindSpore's own `amp.auto_mixed_precision(net, "O2")` casts the loss cell as well and keeps only its `nn.LayerNorm` /
`nn.BatchNorm*` cells in float32: the losses came out in a mix of float16 and float32 (type inference refused to stack
them) and the softmaxes and cross-entropies ran in float16.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn

from src.config import ConfigError

AMP_LEVELS = ("O0", "O2")
FLOAT32_CELLS = (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.Softmax,
                 nn.LogSoftmax, nn.LossBase, nn.SoftmaxCrossEntropyWithLogits)


def keeps_float32(cell: nn.Cell) -> bool:
    return bool(getattr(cell, "keep_float32", False)) or isinstance(cell, FLOAT32_CELLS)


def float16_cells(loss_net: nn.Cell):
    """The cells O2 casts: the loss cell's children, and in place of the network it holds as `model` (src/tasks/*)
    that network's children: the network's own methods (a dVAE's sampling, the retrieval embeddings' normalisation)
    run in the loss cell's float32 like the losses."""
    model = getattr(loss_net, "model", None)
    for child in loss_net.name_cells().values():
        yield from (child.name_cells().values() if child is model else (child,))


def mixed_precision(loss_net: nn.Cell, level: str) -> nn.Cell:
    """`loss_net` (a cell returning float32 (total, losses)) set to run at `level`, in place; returned."""
    if level not in AMP_LEVELS:
        raise ConfigError(f"train.amp_level must be one of {', '.join(AMP_LEVELS)} (O2: float16 but for norms, "
                          f"softmaxes and losses), got '{level}'")
    if level == "O0":
        return loss_net
    for cell in float16_cells(loss_net):
        cell.to_float(ms.float16)
    for _, cell in loss_net.cells_and_names():
        if cell is not loss_net and keeps_float32(cell):
            cell.to_float(ms.float32)
    return loss_net
