"""Every loss of the project, by what it compares; tasks combine them with a model (src/tasks/*). Each is a weighted
mean over the slots or rows whose weight is 1, so padded slots, unmasked positions and rows excluded by the pipeline
carry no loss.

Losses are computed in float32 whatever precision the network runs in (train.amp_level O2): the loss cells keep
float32 (`keep_float32`, see `src/train/precision.py`) and the loss functions cast their predictions up first (a no-op
in float32).
"""
from __future__ import annotations

import math

import mindspore as ms
from mindspore import nn, ops

from src.model.layers import NEG

MAX_LOG_SCALE = math.log(100.0)


def weighted_mean(values, weights):
    """A float32 scalar whatever the precision of `values`."""
    return (values.astype(ms.float32) * weights).sum() / ops.maximum(weights.sum(), 1.0)


def l2_normalise(x):
    """Unit-length rows in the graph; numpy's twin is src/infer/retrieval.py's normalise (the same epsilon)."""
    return x / ops.maximum(ops.norm(x, dim=-1, keepdim=True), 1e-6)


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


def label_smoothed_nll(log_probs, targets, smoothing: float):
    """Per-row cross-entropy of log-probabilities [N, C] against targets [N] with label smoothing: the target class
    weighted 1 - smoothing, every class smoothing / C."""
    nll = -ops.gather_elements(log_probs, 1, targets.expand_dims(1)).squeeze(1)
    return (1.0 - smoothing) * nll - smoothing * log_probs.mean(-1)


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
    p, t = l2_normalise(p), l2_normalise(t)
    logits = ops.matmul(p, t.T) / temperature + (1.0 - w).expand_dims(0) * NEG  # empty slots are no negatives
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


def logit_scale_parameter(temperature: float) -> ms.Parameter:
    """CLIP's learnt temperature: a log-scale parameter starting at 1 / temperature; shape [1], since the optimizer's
    updates are not 0-d."""
    return ms.Parameter(ms.Tensor([math.log(1.0 / temperature)], ms.float32), name="logit_scale")


def clamped_scale(log_scale):
    """The logit scale, clamped at 100 (temperature 0.01) as in CLIP."""
    return ops.exp(ops.minimum(log_scale, MAX_LOG_SCALE))


def same_content(content, present):
    """content [B, M] int32 fingerprints (the pipeline's), present [B, M] -> [M, B, B]: 1.0 where two rows have the
    same input of a modality (the same image, caption or recording; a duplicate is no negative)."""
    equal = ops.equal(content.T.expand_dims(2), content.T.expand_dims(1)).astype(ms.float32)
    return equal * present.T.expand_dims(2) * present.T.expand_dims(1)


def info_nce(ce, embeddings, m, n, present, same, scale):
    """Symmetric InfoNCE between modalities m and n over the rows that have both; another row with the same input
    of m or of n is neither positive nor negative."""
    both = present[:, m] * present[:, n]
    b = both.shape[0]
    duplicates = ops.minimum(same[m] + same[n], 1.0)
    blocked = (duplicates - ops.eye(b, b, ms.float32)) + (1.0 - both).expand_dims(0)
    logits = ops.matmul(embeddings[m], embeddings[n].T) * scale + ops.minimum(blocked, 1.0) * NEG
    own = ops.arange(0, b, dtype=ms.int32)
    return (weighted_mean(ce(logits, own), both) + weighted_mean(ce(logits.T, own), both)) / 2.0


def pairwise_info_nce(ce, embeddings, present, same, scale):
    """embeddings [M, B, D] unit length (one per modality), present [B, M], same [M, B, B] (`same_content`) -> the
    mean InfoNCE over every pair of modalities (T-I, T-A and I-A for text, image, audio)."""
    count = embeddings.shape[0]
    total, pairs = 0.0, 0
    for m in range(count):
        for n in range(m + 1, count):
            total = total + info_nce(ce, embeddings, m, n, present, same, scale)
            pairs += 1
    return total / float(pairs)


# ----------------------------------------------------------------------------------------------------------------------
# The losses as cells, as a task cell holds them beside its model: each takes predictions, targets and the weights of
# the slots or rows that count, and returns a float32 scalar.
# ----------------------------------------------------------------------------------------------------------------------
class MaskedCrossEntropy(nn.Cell):
    """Cross-entropy of logits [..., C] against class ids [...], averaged over the weighted items (MLM, DTR, DIR)."""

    def __init__(self):
        super().__init__()
        self.ce = CrossEntropy()

    def construct(self, logits, targets, weights):
        return weighted_mean(self.ce(logits, targets), weights)


class LabelSmoothedCrossEntropy(nn.Cell):
    """Cross-entropy of log-probabilities [N, C] against class ids [N] with label smoothing, averaged over the
    weighted rows (captioning)."""

    def __init__(self, smoothing: float):
        super().__init__()
        self.smoothing = smoothing

    def construct(self, log_probs, targets, weights):
        return weighted_mean(label_smoothed_nll(log_probs, targets, self.smoothing), weights)


class FeatureRegressionLoss(nn.Cell):
    """Mean squared error of predicted features [..., D] per slot, averaged over the weighted slots (MVFR, MAFR)."""

    def construct(self, pred, target, weights):
        return regression_loss(pred, target, weights)


class MaskedFeatureNCE(nn.Cell):
    """Each masked slot's prediction against its own feature, the batch's other masked slots as negatives (MAM)."""

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    def construct(self, pred, target, weights):
        return contrastive_loss(pred, target, weights, self.temperature)


class RegionClassKL(nn.Cell):
    """KL of the regions' class distributions (their top-k ids and probabilities) to the predicted ones, averaged over
    the weighted slots (MRC)."""

    def __init__(self):
        super().__init__()
        self.kl = SoftTargetKL()

    def construct(self, logits, ids, probs, weights):
        return weighted_mean(self.kl(logits, ids, probs), weights)


class MatchingLoss(nn.Cell):
    """The 5-way sample-level matching loss over the weighted rows."""

    def construct(self, logits, labels, weights):
        return matching_loss(logits, labels, weights)


class SoftBCE(nn.Cell):
    """Binary cross-entropy of every class against its soft target, summed over classes, averaged over rows (VQA)."""

    def construct(self, logits, targets, weights):
        return soft_bce(logits, targets, weights)


class ContrastiveLoss(nn.Cell):
    """InfoNCE between every pair of modalities' embeddings [M, B, D] (unit length) at the learnt temperature: the
    owner's log-scale parameter (`logit_scale_parameter`, clamped at 100); rows with the same input of a modality
    (their content fingerprints [B, M]) are no negatives of each other."""

    def __init__(self):
        super().__init__()
        self.ce = CrossEntropy()

    def construct(self, embeddings, present, content, log_scale):
        return pairwise_info_nce(self.ce, embeddings, present, same_content(content, present), clamped_scale(log_scale))
