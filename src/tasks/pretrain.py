"""The fused pre-training objective: ONE encoder pass per batch yields every pretext loss.

Which rows carry which loss is decided by the data pipeline (see `src/data/pipeline.py`) through per-slot and per-row
weights. A loss whose weight is 0 in the config is not built: its head does not exist and its branch is removed when
the graph is compiled.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, ConfigError, LossConfig, ModelConfig
from src.data.codes import load_codes
from src.data.pipeline import open_training_data, training_data
from src.data.masking import MATCH_CASES
from src.model.heads import FeatureRegression, VocabHead, gather_positions
from src.model.losses import (CrossEntropy, SoftTargetKL, contrastive_loss, matching_loss, regression_loss,
                              weighted_mean)
from src.data.objectives import DIR_COLUMNS, PRETRAIN_COLUMNS
from src.modality import INPUT_COLUMNS, MASKED_LOSSES, MODALITIES
from src.model.opt import OPT, DataDims
from src.model.primitives import Dense
from src.tasks.classify import probe_graphs
from src.tasks.registry import Task, Training, register
from src.train.checkpoint import init_model

LOSS_NAMES = MASKED_LOSSES + ("match", "dtr", "dir")  # mlm, mvfr, mrc, mafr, mam_nce: per modality (src/modality.py)


class PretrainLoss(nn.Cell):
    """Batch columns (in `PRETRAIN_COLUMNS` order) -> (weighted total, [each loss] in `LOSS_NAMES` order)."""

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, dims: DataDims):
        super().__init__()
        self.net = OPT(model_cfg, dims)
        h, eps = model_cfg.hidden, model_cfg.layer_norm_eps
        self.weights = tuple(float(getattr(loss_cfg, n)) for n in LOSS_NAMES)
        self.use = tuple(w > 0 for w in self.weights)
        # where each modality's segment starts in the joint sequence
        offsets = np.cumsum([0] + [dims.lengths[m] for m in MODALITIES])
        self.starts = {m: int(offset) for m, offset in zip(MODALITIES, offsets)}
        self.at = {c: i for i, c in enumerate(PRETRAIN_COLUMNS + DIR_COLUMNS)}
        self.temperature = loss_cfg.nce_temperature
        self.ce = CrossEntropy()
        self.kl = SoftTargetKL()
        self.mlm_head = VocabHead(h, dims.vocab_size, eps) if self.use[0] else None
        self.mvfr_head = FeatureRegression(h, dims.feature_dims["image"]) if self.use[1] else None
        self.mrc_head = Dense(h, dims.mrc_classes) if self.use[2] else None
        self.mafr_head = FeatureRegression(h, dims.feature_dims["audio"]) if (self.use[3] or self.use[4]) else None
        self.match_head = Dense(h, len(MATCH_CASES)) if self.use[5] else None
        self.dtr_head = VocabHead(h, dims.vocab_size, eps, transform=False) if self.use[6] else None
        if self.use[6] and self.net.text_decoder is None:
            raise ConfigError("the DTR loss needs a text decoder (model.decoder_layers > 0)")
        if self.use[7] and self.net.vision_decoder is None:
            raise ConfigError("the DIR loss needs a vision decoder (model.vision_decoder_layers > 0) and dVAE codes")
        self.dir_head = Dense(h, dims.codebook_size) if self.use[7] else None
        self.initialised = tuple(init_model(self, model_cfg.init_from))

    def construct(self, *batch):  # PRETRAIN_COLUMNS (+ DIR_COLUMNS with DIR), by name through self.at
        at = self.at
        states, mask = self.net.encode(*batch[:len(INPUT_COLUMNS)])
        zero = ops.zeros((), ms.float32)
        mlm = mvfr = mrc = mafr = nce = match = dtr = dir_ = zero
        if self.use[0]:
            logits = self.mlm_head(gather_positions(states, batch[at["mlm_positions"]]),
                                   self.net.word_embedding_table())
            mlm = weighted_mean(self.ce(logits, batch[at["mlm_targets"]]), batch[at["mlm_weights"]])
        if self.use[1] or self.use[2]:
            image_states = gather_positions(states, batch[at["mvm_positions"]] + self.starts["image"])
            weights = batch[at["mvm_weights"]]
            if self.use[1]:
                mvfr = regression_loss(self.mvfr_head(image_states), batch[at["mvm_targets"]], weights)
            if self.use[2]:
                logits = self.mrc_head(image_states)  # Dense multiplies [B * N, H] rows, not a broadcast weight
                mrc = weighted_mean(self.kl(logits, batch[at["mrc_target_ids"]], batch[at["mrc_target_probs"]]),
                                    weights)
        if self.use[3] or self.use[4]:
            audio_pred = self.mafr_head(gather_positions(states, batch[at["mam_positions"]] + self.starts["audio"]))
            targets, weights = batch[at["mam_targets"]], batch[at["mam_weights"]]
            if self.use[3]:
                mafr = regression_loss(audio_pred, targets, weights)
            if self.use[4]:
                nce = contrastive_loss(audio_pred, targets, weights, self.temperature)
        if self.use[5]:
            match = matching_loss(self.match_head(states[:, 0]), batch[at["match_label"]], batch[at["match_weight"]])
        if self.use[6]:
            dtr = self.dtr_loss(batch[at["text_target_ids"]], states, mask, batch[at["dtr_weight"]])
        if self.use[7]:
            dir_ = self.dir_loss(batch[at["image_codes"]], states, mask, batch[at["dir_weight"]])
        losses = ops.stack((mlm, mvfr, mrc, mafr, nce, match, dtr, dir_))
        total = (losses * ms.Tensor(self.weights, ms.float32)).sum()
        return total, losses

    def dtr_loss(self, target_ids, memory, memory_mask, row_weights):
        """Teacher-forced reconstruction of the (unmasked) text: predict piece i+1 from pieces <= i."""
        inputs, targets = target_ids[:, :-1], target_ids[:, 1:]
        hidden = self.net.text_decoder(inputs, memory, memory_mask)
        logits = self.dtr_head(hidden, self.net.word_embedding_table())
        weights = (targets > 0).astype(ms.float32) * row_weights.expand_dims(1)
        return weighted_mean(self.ce(logits, targets), weights)


    def dir_loss(self, codes, memory, memory_mask, row_weights):
        """Teacher-forced reconstruction of the image's dVAE codes (row-major): predict code i from codes < i."""
        start = ops.full((codes.shape[0], 1), self.net.vision_decoder.start_id, dtype=ms.int32)
        hidden = self.net.vision_decoder(ops.concat((start, codes[:, :-1]), 1), memory, memory_mask)
        weights = ops.ones(codes.shape, ms.float32) * row_weights.expand_dims(1)
        logits = self.dir_head(hidden)
        return weighted_mean(self.ce(logits, codes), weights)


def build(cfg: Config, num_shards: int = 1, shard_id: int = 0):
    """(loss cell, make_dataset(epoch, start_batch), batches per epoch) for `src.train.trainer.fit`."""
    with_dir = cfg.loss.dir > 0
    data = open_training_data(cfg.data)
    codes = load_codes(data, cfg.data.train_split, cfg.dvae) if with_dir else None
    make_dataset, per_epoch = training_data(data, cfg.data, "pretrain", num_shards, shard_id, codes=codes)
    dims = DataDims.from_prepared(data, cfg.data)
    if with_dir:
        dims = dataclasses.replace(dims, codebook_size=cfg.dvae.codebook_size)
        record_dvae(cfg, data)
    loss_net = PretrainLoss(cfg.model, cfg.loss, dims)
    return loss_net, make_dataset, per_epoch


def record_dvae(cfg: Config, data) -> None:
    """Set dvae.checkpoint to the dVAE the data's codes came from, so the run's config.yaml names the decoder that
    text-to-image needs; a different one given in the config is refused."""
    from src.data.codes import codes_meta
    from src.train.checkpoint import resolve_checkpoint
    source = codes_meta(data)["dvae_checkpoint"]
    given = cfg.dvae.checkpoint
    if given and Path(resolve_checkpoint(given)).resolve() != Path(source).resolve():
        raise ConfigError(f"dvae.checkpoint is {given}, but the codes in {data.root} came from {source}: extract "
                          "the codes with that dVAE (python -m src.tasks.dvae_codes) or leave dvae.checkpoint empty")
    cfg.dvae.checkpoint = source


register(Task("pretrain", __name__, training=Training(build, LOSS_NAMES), graphs=probe_graphs,
              help="every pretext loss in one train step; exports the linear probe's pooled features"))
