"""Pre-training heads: the vocabulary head (MLM, DTR, captioning), feature regression (MVFR, MAFR) and the positions
they read. Their losses are in `src/model/losses.py`; VocabHead returns float32 logits whatever precision the network
runs in (train.amp_level O2 runs the heads' matrix products in float16)."""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.model.primitives import GELU, Dense, LayerNorm


def gather_positions(states, positions):
    """states [B, L, H], positions [B, M] -> [B, M, H]."""
    b, length, h = states.shape
    offsets = (ops.arange(0, b, dtype=ms.int32) * length).expand_dims(1)
    flat = (positions + offsets).reshape(-1)
    return ops.gather(states.reshape(b * length, h), flat, 0).reshape(b, -1, h)


class TableLogits(nn.Cell):
    """h [N, H] @ table [C, H]^T + bias [C] -> float32 logits [N, C]. A cell of its own so that under mixed precision
    its inputs (a float32 LayerNorm output, the table) enter its float16 product together."""

    def __init__(self):
        super().__init__()
        self.matmul = ops.MatMul(transpose_b=True)  # no [C, H] -> [H, C] copy of the table per step

    def construct(self, h, table, bias):
        return (self.matmul(h, table) + bias).astype(ms.float32)  # callers take log-softmaxes


class VocabHead(nn.Cell):
    """Logits over the vocabulary through the tied word-embedding table; with `transform` it is BERT's MLM head
    (dense, GELU, LayerNorm first). Rows are flattened to [N, V] before the product: a [B, L, H] @ [H, V] matmul
    broadcasts the table to [B, H, V] (gigabytes for a real vocabulary) on CPU.

    With `output_ids` (sorted piece ids) the head's classes are those pieces only: logits [N, len(output_ids)], class c
    is piece output_ids[c] (`classes_of` maps pieces to classes, `over_vocabulary` spreads log-probabilities back over
    the whole vocabulary for decoding). The head then has its own output table, one row per class (`init_table` copies
    the word embeddings of its pieces; its bias starts at zero): its gradient is [K, H], not a dense [V, H] one that
    the optimizer would step over the whole vocabulary every step. The ids are Parameters, so a checkpoint carries
    its classes.
    """

    def __init__(self, hidden: int, vocab_size: int, eps: float, transform: bool = True, output_ids=None):
        super().__init__()
        self.transform = transform
        if transform:
            self.dense = Dense(hidden, hidden)
            self.act = GELU()
            self.norm = LayerNorm(hidden, eps)
        self.logits = TableLogits()
        self.output_ids = self.class_index = self.table = self.class_bias = None
        if output_ids is None:
            self.bias = ms.Parameter(ops.zeros(vocab_size, ms.float32), name="bias")
        else:
            output_ids = np.asarray(output_ids, np.int32)
            index = np.full(vocab_size, len(output_ids), np.int32)  # pieces outside the classes: no class
            index[output_ids] = np.arange(len(output_ids), dtype=np.int32)
            self.output_ids = ms.Parameter(ms.Tensor(output_ids), name="output_ids", requires_grad=False)
            self.class_index = ms.Parameter(ms.Tensor(index), name="class_index", requires_grad=False)
            self.table = ms.Parameter(ops.zeros((len(output_ids), hidden), ms.float32), name="table")
            self.class_bias = ms.Parameter(ops.zeros(len(output_ids), ms.float32), name="class_bias")

    def init_table(self, word_table):
        """Start the class table from the word-table rows of the head's pieces."""
        self.table.set_data(ms.Tensor(word_table.asnumpy()[self.output_ids.asnumpy()]))

    def construct(self, x, table):
        h = x.reshape(-1, x.shape[-1])
        if self.transform:
            h = self.norm(self.act(self.dense(h)))
        if self.output_ids is None:
            return self.logits(h, table, self.bias)
        return self.logits(h, self.table, self.class_bias)

    def classes_of(self, ids):
        """Piece ids [...] -> their class indices (the ids themselves without output_ids)."""
        if self.output_ids is None:
            return ids
        return ops.gather(self.class_index, ids.reshape(-1), 0).reshape(ids.shape)

    def over_vocabulary(self, log_probs):
        """Log-probabilities over the classes [N, K] -> over the vocabulary [N, V], pieces outside the classes at a
        log-probability no search picks."""
        if self.output_ids is None:
            return log_probs
        n = log_probs.shape[0]
        padded = ops.concat((log_probs, ops.full((n, 1), -1e9, dtype=log_probs.dtype)), axis=1)
        return ops.gather(padded, self.class_index, 1)


class FeatureRegression(nn.Cell):
    """MVFR / MAFR: an FC layer from the encoder output back to the input feature space, L2 loss."""

    def __init__(self, hidden: int, feature_dim: int):
        super().__init__()
        self.proj = Dense(hidden, feature_dim)

    def construct(self, x):
        return self.proj(x)
