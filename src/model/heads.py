"""Pre-training heads and their losses. Every loss is a weighted mean over the slots/rows whose weight is 1, so padded
slots, unmasked positions and rows excluded by the pipeline carry no loss.

Losses are computed in float32 whatever precision the network runs in (train.amp_level O2 runs the heads' matrix
products in float16): the loss cells keep float32 (`keep_float32`, see `src/train/precision.py`), the loss functions
cast their predictions up first (a no-op in float32), and VocabHead returns float32 logits."""
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


def weighted_mean(values, weights):
    """A float32 scalar whatever the precision of `values`."""
    return (values.astype(ms.float32) * weights).sum() / ops.maximum(weights.sum(), 1.0)


class CrossEntropy(nn.Cell):
    """Per-item cross-entropy of logits [..., C] against integer targets [...]; float32 under mixed precision."""
    keep_float32 = True

    def __init__(self):
        super().__init__()
        self.ce = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="none")

    def construct(self, logits, targets):
        c = logits.shape[-1]
        return self.ce(logits.reshape(-1, c), targets.reshape(-1)).reshape(targets.shape)


class SoftTargetKL(nn.Cell):
    """KL(target || softmax(logits)) per item, for targets given as their k most likely classes (UNITER's MRC-kl):
    logits [..., C], class ids [..., k] and probabilities [..., k] summing to 1. Float32 under mixed precision."""
    keep_float32 = True

    def __init__(self):
        super().__init__()
        self.log_softmax = nn.LogSoftmax(axis=-1)
        self.gather = ops.GatherD()

    def construct(self, logits, ids, probs):
        c, k = logits.shape[-1], ids.shape[-1]
        log_q = self.gather(self.log_softmax(logits.reshape(-1, c)), 1, ids.reshape(-1, k))
        p = probs.reshape(-1, k)
        log_p = ops.log(ops.maximum(p, 1e-12))
        return (p * (log_p - log_q)).sum(-1).reshape(ids.shape[:-1])


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


def regression_loss(pred, target, weights):
    """Mean squared error per token, averaged over the weighted slots."""
    return weighted_mean(((pred.astype(ms.float32) - target) ** 2).mean(-1), weights)


def contrastive_loss(pred, target, weights, temperature: float):
    """MAM contrastive (paper eq. 8): each masked token's prediction should be most similar (cosine) to its own original
    feature; the other masked tokens of the batch are the negatives. Lower when pred equals its target."""
    d = pred.shape[-1]
    p = pred.reshape(-1, d).astype(ms.float32)
    t = target.reshape(-1, d).astype(ms.float32)
    w = weights.reshape(-1)
    p = p / ops.maximum(ops.norm(p, dim=-1, keepdim=True), 1e-6)
    t = t / ops.maximum(ops.norm(t, dim=-1, keepdim=True), 1e-6)
    logits = ops.matmul(p, t.T) / temperature + (1.0 - w).expand_dims(0) * -10000.0  # empty slots are no negatives
    log_probs = ops.log_softmax(logits, axis=-1)
    n = p.shape[0]
    own = ops.gather_elements(log_probs, 1, ops.arange(0, n, dtype=ms.int32).reshape(n, 1)).reshape(n)
    return weighted_mean(-own, w)


def binary_cross_entropy(logits, targets):
    """Element-wise BCE of logits against targets in [0, 1], in the form that neither overflows nor loses precision:
    max(x, 0) - x t + log(1 + exp(-|x|)), in float32."""
    logits = logits.astype(ms.float32)
    return ops.maximum(logits, 0.0) - logits * targets + ops.log(1.0 + ops.exp(-ops.abs(logits)))


def matching_loss(logits, labels, weights):
    """5-way sample-level matching with BCE against the one-hot label (paper eq. 11)."""
    onehot = ops.one_hot(labels, logits.shape[-1], ms.Tensor(1.0, ms.float32), ms.Tensor(0.0, ms.float32))
    return weighted_mean(binary_cross_entropy(logits, onehot).mean(-1), weights)


def soft_bce(logits, targets, weights):
    """VQA: BCE of every class against its soft target [B, C], summed over the classes, averaged over the weighted
    rows."""
    return weighted_mean(binary_cross_entropy(logits, targets).sum(-1), weights)
