"""Cross-modal retrieval: fine-tuning with in-batch hard negatives and a contrastive objective.

Two scores rank candidates (evaluation is in `src/tasks/retrieval_eval.py`):
- a fast one: the cosine of pooled single-modality embeddings (the encoder over one modality, mean-pooled, projected);
- an accurate one: the cross-encoder's matching score, the 5-way matching head's "all match" logit on [CLS] of the
  joint sequence of query and candidate.

Fine-tuning trains both in one step. The three single-modality passes give the embeddings; InfoNCE over T-I, T-A and
I-A trains them. Each row also shows one view (a pair or the triple, chosen by the pipeline) twice to the cross-encoder:
as it is (label "all match") and with one modality swapped for its hardest in-batch negative under the embeddings (a
pair then matches nowhere: "none match"; a triple gets the paper's case for the swapped modality).
"""
from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, LossConfig, ModelConfig
from src.data.masking import MATCH_CASES
from src.data.pipeline import training_data
from src.data.records import open_prepared
from src.model.convert import init_model
from src.model.heads import CrossEntropy, matching_loss, weighted_mean
from src.model.layers import NEG
from src.model.opt import MODALITIES, OPT, DataDims, masked_mean

LOSS_NAMES = ("match", "contrastive")
# The matching label of a triple whose text / image / audio was swapped (see MATCH_CASES), and of a pair that does
# not match.
SWAPPED_CASE = (1, 3, 2)
PAIR_MISMATCH = len(MATCH_CASES) - 1
MAX_LOG_SCALE = math.log(100.0)


def l2_normalise(x):
    return x / ops.maximum(ops.norm(x, dim=-1, keepdim=True), 1e-6)


class Projection(nn.Cell):
    """Pooled states -> embedding: standardised by fixed statistics, LayerNorm, then a linear map.

    The statistics (`mean`, `inv_std`: 0 and 1 unless the warm start sets them to those of the training features)
    matter because pooled encoder states of different items are nearly parallel (cosine 0.998 after the demo
    pre-training): the shared part swamps the differences, and a per-row LayerNorm does not remove it. They are fixed,
    not batch statistics: a BatchNorm's moving statistics lag the weights during fine-tuning, so evaluation would
    embed with numbers that training never used."""

    def __init__(self, hidden: int, embed_dim: int, eps: float):
        super().__init__()
        self.mean = ms.Parameter(ms.Tensor(np.zeros(hidden, np.float32)), name="mean", requires_grad=False)
        self.inv_std = ms.Parameter(ms.Tensor(np.ones(hidden, np.float32)), name="inv_std", requires_grad=False)
        self.norm = nn.LayerNorm((hidden,), epsilon=eps)
        self.dense = nn.Dense(hidden, embed_dim)

    def construct(self, x):
        return self.dense(self.norm((x - self.mean) * self.inv_std))

    def set_statistics(self, features: np.ndarray) -> None:
        """Standardise by the mean and spread of `features` [N, hidden]."""
        self.mean.set_data(ms.Tensor(features.mean(0).astype(np.float32)))
        self.inv_std.set_data(ms.Tensor((1.0 / (features.std(0) + 1e-6)).astype(np.float32)))


def embedding_widths(hidden: int, dims: DataDims) -> dict:
    """Modality -> the width of what its projection reads (`RetrievalModel.embedding_inputs`)."""
    return {"text": hidden, "image": hidden + dims.image_dim, "audio": hidden + dims.audio_dim}


class RetrievalModel(nn.Cell):
    """The OPT network with the matching head and one projection per modality. Parameter names (net.*, match_head.*)
    are those of the pre-training cell, so a pre-trained checkpoint loads into it directly."""

    def __init__(self, model_cfg: ModelConfig, dims: DataDims):
        super().__init__()
        self.net = OPT(model_cfg, dims)
        self.match_head = nn.Dense(model_cfg.hidden, len(MATCH_CASES))
        self.projections = nn.CellDict({m: Projection(width, model_cfg.embed_dim, model_cfg.layer_norm_eps)
                                        for m, width in embedding_widths(model_cfg.hidden, dims).items()})

    def embedding_inputs(self, modality, *inputs):
        """What the projection of `modality` reads: the cross-modal encoder's states over that modality alone,
        mean-pooled, and for image and audio beside them the mean output of their single-modal encoder (the
        EfficientNet regions, the Whisper frames; the text's is the encoder itself). The pooled states of a short
        pre-training keep less of what tells two images apart than the features they were computed from (on the demo
        a head over the input features alone retrieves better), so the fast score reads both."""
        states, mask = self.net.encode_only((modality,), *inputs)
        pooled = masked_mean(states, mask)
        if modality == "image":
            pooled = ops.concat((pooled, masked_mean(inputs[2], inputs[4])), axis=1)
        elif modality == "audio":
            pooled = ops.concat((pooled, masked_mean(inputs[5], inputs[6])), axis=1)
        return pooled

    def embed(self, modality, *inputs):
        """Unit-length [B, embed_dim] embedding of one modality of each row, encoded alone."""
        return l2_normalise(self.projections[modality](self.embedding_inputs(modality, *inputs)))

    def match_logits(self, modalities, *inputs):
        """[B, 5] matching logits of the rows shown with `modalities` only."""
        states, _ = self.net.encode_only(modalities, *inputs)
        return self.match_head(states[:, 0])


def load_trained(cfg: Config, ckpt, required=("net.", "match_head.", "projections.")):
    """(RetrievalModel in inference mode with the checkpoint's weights, the prepared data of cfg.data.path)."""
    from src.train.checkpoint import load_weights
    data = open_prepared(cfg.data.path)
    model = RetrievalModel(cfg.model, DataDims.from_prepared(data, cfg.data.max_audio_tokens))
    load_weights(model, ckpt, required)
    model.set_train(False)
    return model, data


def logit_scale_parameter(temperature: float) -> ms.Parameter:
    """CLIP's learnt temperature: a log-scale parameter starting at 1 / temperature; shape [1], since the optimizer's
    updates are not 0-d."""
    return ms.Parameter(ms.Tensor([math.log(1.0 / temperature)], ms.float32), name="logit_scale")


def clamped_scale(log_scale):
    """The logit scale, clamped at 100 (temperature 0.01) as in CLIP."""
    return ops.exp(ops.minimum(log_scale, MAX_LOG_SCALE))


def same_content(content, present):
    """content [B, 3] int32 fingerprints (the pipeline's), present [B, 3] -> [3, B, B]: 1.0 where two rows have the
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


def tri_modal_info_nce(ce, embeddings, present, same, scale):
    """embeddings [3, B, D] unit length (text, image, audio), present [B, 3], same [3, B, B] (`same_content`) -> the
    mean InfoNCE over the pairs T-I, T-A and I-A."""
    return (info_nce(ce, embeddings, 0, 1, present, same, scale) + info_nce(ce, embeddings, 0, 2, present, same, scale)
            + info_nce(ce, embeddings, 1, 2, present, same, scale)) / 3.0


class RetrievalLoss(RetrievalModel):
    """Batch columns (RETRIEVAL_COLUMNS) -> (weighted total, [match, contrastive]).

    The contrastive loss runs over every row of the batch (single-modality passes are cheap); the matching loss over
    the first `loss.match_rows` of them (0: all), each shown twice at the full joint length, which costs most."""

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, dims: DataDims):
        super().__init__(model_cfg, dims)
        self.weights = ms.Tensor([loss_cfg.match, loss_cfg.contrastive], ms.float32)
        self.match_rows = loss_cfg.match_rows
        self.logit_scale = logit_scale_parameter(loss_cfg.contrastive_temperature)
        self.ce = CrossEntropy()
        self.initialised = tuple(init_model(self, model_cfg.init_from))

    def construct(self, text_ids, text_mask, image_feat, image_boxes, image_mask, audio_feat, audio_mask, present,
                  content, view, swap):
        inputs = (text_ids, text_mask, image_feat, image_boxes, image_mask, audio_feat, audio_mask)
        embeddings = ops.stack((self.embed("text", *inputs), self.embed("image", *inputs),
                                self.embed("audio", *inputs)))
        same = same_content(content, present)
        scale = clamped_scale(self.logit_scale)
        contrastive = tri_modal_info_nce(self.ce, embeddings, present, same, scale)
        k = self.match_rows if 0 < self.match_rows < text_ids.shape[0] else text_ids.shape[0]
        donors, found = self.hardest_negatives(ops.stop_gradient(embeddings), present, view, swap,
                                               ops.minimum(same.sum(0), 1.0))
        match = self.matching(inputs, view[:k], swap[:k], donors[:, :k], found[:k])
        losses = ops.stack((match, contrastive))
        return (losses * self.weights).sum(), losses

    def hardest_negatives(self, embeddings, present, view, swap, duplicates):
        """For each row, the in-batch row whose swapped modality is most similar (summed cosine) to the row's other
        shown modalities, among the rows that share none of its inputs (`duplicates` [B, B]). Returns donor row
        indices per modality [3, B] and whether a valid donor exists [B]."""
        b = embeddings.shape[1]
        flat = embeddings.reshape(3 * b, -1)
        sims = ops.matmul(flat, flat.T).reshape(3, b, 3, b).transpose(0, 2, 1, 3)  # [o, m, i, j] = e_o[i] . e_m[j]
        anchors = (view * (1.0 - swap)).T.reshape(3, 1, b, 1)  # the modalities a row keeps
        hardness = (sims * anchors).sum(0)  # [m, i, j]
        blocked = ops.minimum(duplicates.expand_dims(0) + (1.0 - present.T).expand_dims(1), 1.0)
        hardness = hardness + blocked * NEG * 10.0
        donors = hardness.argmax(-1).astype(ms.int32)  # [m, i]
        best = (ops.amax(hardness, -1) * swap.T).sum(0)
        return donors, (best > NEG).astype(ms.float32)

    def matching(self, inputs, view, swap, donors, found):
        """Matching loss over the first b rows (b = len(view)), each row's view shown as it is and with its swapped
        modality from its donor (a row of the whole batch)."""
        b = view.shape[0]
        own = ops.arange(0, b, dtype=ms.int32)
        source = ops.select(swap.T > 0, donors, own.expand_dims(0).broadcast_to((3, b)))  # [3, b] row per modality
        donor_of = (source[0], source[0], source[1], source[1], source[1], source[2], source[2])
        rows = tuple(ops.concat((x[:b], x[r])) for x, r in zip(inputs, donor_of))
        shown = ops.concat((view, view))
        text_shown = ops.concat((ops.ones((2 * b, 1), ms.float32), rows[1][:, 1:] * shown[:, 0:1]), axis=1)
        states, _ = self.net.encode(rows[0], text_shown, rows[2], rows[3], rows[4] * shown[:, 1:2], rows[5],
                                    rows[6] * shown[:, 2:3])
        triple = view.sum(1) > 2.5
        swapped_case = (swap * ms.Tensor(SWAPPED_CASE, ms.float32)).sum(1).astype(ms.int32)
        negative_label = ops.select(triple, swapped_case, ops.full((b,), PAIR_MISMATCH, dtype=ms.int32))
        labels = ops.concat((ops.zeros((b,), ms.int32), negative_label))
        usable = (view.sum(1) > 1.5).astype(ms.float32)
        weights = ops.concat((usable, usable * found))
        return matching_loss(self.match_head(states[:, 0]), labels, weights)


def build(cfg: Config, num_shards: int = 1, shard_id: int = 0):
    """(loss cell, make_dataset(epoch, start_batch), batches per epoch) for `src.train.trainer.fit`."""
    data, make_dataset, per_epoch = training_data(cfg.data, "retrieval", num_shards, shard_id)
    loss_net = RetrievalLoss(cfg.model, cfg.loss, DataDims.from_prepared(data, cfg.data.max_audio_tokens))
    return loss_net, make_dataset, per_epoch


def warm_start(cfg: Config, loss_net: RetrievalLoss):
    """`fit`'s warm start (run when training starts from scratch): the projections fitted to their inputs under the
    frozen encoder first (`loss.warm_start_epochs`); None when off."""
    if cfg.loss.warm_start_epochs <= 0:
        return None
    from src.tasks.linear_retrieval import fit_projections
    return lambda: fit_projections(loss_net, cfg)
