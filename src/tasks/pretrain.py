"""The fused pre-training objective: ONE encoder pass per batch yields every pretext loss.

Which rows carry which loss is decided by the data pipeline (see `src/data/pipeline.py`) through per-slot and per-row
weights. A loss whose weight is 0 in the config is not built: its head does not exist and its branch is removed when
the graph is compiled.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import mindspore as ms
from mindspore import nn, ops

from src.config import Config, ConfigError, LossConfig, ModelConfig
from src.data.codes import load_codes
from src.data.pipeline import open_training_data, training_data
from src.data.masking import MATCH_CASES
from src.model.heads import FeatureRegression, VocabHead, gather_positions
from src.model.losses import (FeatureRegressionLoss, MaskedCrossEntropy, MaskedFeatureNCE, MatchingLoss,
                              RegionClassKL)
from src.data.objectives import DIR_COLUMNS, PRETRAIN_COLUMNS, target_column
from src.modality import INPUT_COLUMNS, MASKED_LOSSES, SPECS
from src.model.opt import OPT, DataDims
from src.model.primitives import Dense
from src.tasks.classify import probe_graphs
from src.tasks.registry import Task, Training, register
from src.train.checkpoint import init_model

LOSS_NAMES = MASKED_LOSSES + ("match", "dtr", "dir")  # mlm, mvfr, mrc, mafr, mam_nce: per modality (src/modality.py)


def loss_weights(loss_cfg: LossConfig) -> tuple:
    """The weight of each loss of LOSS_NAMES: its LossConfig field, or for a further modality's masked loss
    loss.further (1 when absent)."""
    unknown = sorted(set(loss_cfg.further) - set(LOSS_NAMES))
    if unknown:
        raise ConfigError(f"loss.further: '{unknown[0]}' is no masked loss of a registered modality (known: "
                          f"{', '.join(n for n in MASKED_LOSSES if not hasattr(loss_cfg, n)) or 'none'})")
    return tuple(float(getattr(loss_cfg, n) if hasattr(loss_cfg, n) else loss_cfg.further.get(n, 1.0))
                 for n in LOSS_NAMES)


class PretrainLoss(nn.Cell):
    """Batch columns (PRETRAIN_COLUMNS, + DIR_COLUMNS with DIR; read by name) -> (weighted total, [each loss] in
    `LOSS_NAMES` order). Each modality's masked losses come from its spec: a head per loss named <loss>_head (an nce
    loss reads its modality's regression head), over the encoder states at the modality's masked positions. A masked
    loss of a modality added outside src/ weighs what loss_cfg.further gives it, else 1."""

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, dims: DataDims):
        super().__init__()
        self.net = OPT(model_cfg, dims)
        h, eps = model_cfg.hidden, model_cfg.layer_norm_eps
        self.weights = loss_weights(loss_cfg)
        self.use = {n: w > 0 for n, w in zip(LOSS_NAMES, self.weights)}
        self.at = {c: i for i, c in enumerate(PRETRAIN_COLUMNS + DIR_COLUMNS)}
        self.cross_entropy = MaskedCrossEntropy()  # MLM, DTR, DIR
        self.regression = FeatureRegressionLoss()
        self.region_kl = RegionClassKL()
        self.feature_nce = MaskedFeatureNCE(loss_cfg.nce_temperature)
        self.matching = MatchingLoss()
        self.masked_plan = self.build_masked_heads(h, eps, dims)
        self.match_head = Dense(h, len(MATCH_CASES)) if self.use["match"] else None
        self.dtr_head = VocabHead(h, dims.vocab_size, eps, transform=False) if self.use["dtr"] else None
        if self.use["dtr"] and self.net.text_decoder is None:
            raise ConfigError("the DTR loss needs a text decoder (model.decoder_layers > 0)")
        if self.use["dir"] and self.net.vision_decoder is None:
            raise ConfigError("the DIR loss needs a vision decoder (model.vision_decoder_layers > 0) and dVAE codes")
        self.dir_head = Dense(h, dims.codebook_size) if self.use["dir"] else None
        self.initialised = tuple(init_model(self, model_cfg.init_from))

    def build_masked_heads(self, h: int, eps: float, dims: DataDims) -> tuple:
        """The heads of every modality's masked losses (only those with a weight), and the plan construct follows:
        per modality (its column prefix, where its segment starts, its regression head or "", and per loss its kind
        ("off" when not built), head and class target columns)."""
        plan, start = [], 0
        for m, spec in SPECS.items():
            kinds = dict(spec.masked_losses)
            regression = next((n for n, k in spec.masked_losses if k == "regression"), "")
            predicts = bool(regression) and any(self.use[n] for n, k in spec.masked_losses
                                                if k in ("regression", "nce"))
            losses = []
            for name, kind in spec.masked_losses:
                head = f"{name}_head"
                if kind == "vocab":
                    setattr(self, head, VocabHead(h, dims.vocab_size, eps) if self.use[name] else None)
                elif kind == "regression":
                    setattr(self, head, FeatureRegression(h, dims.feature_dims[m]) if predicts else None)
                elif kind == "classes":
                    setattr(self, head, Dense(h, dims.mrc_classes) if self.use[name] else None)
                elif kind != "nce":
                    raise ValueError(f"modality '{m}': masked loss '{name}' has an unknown kind '{kind}'")
                classes = tuple(target_column(c) for c in spec.class_columns)
                losses.append((kind if self.use[name] else "off", head, classes))
            if "nce" in kinds.values() and not regression:
                raise ValueError(f"modality '{m}': an nce loss needs a regression loss (its head) beside it")
            plan.append((spec.mask_prefix, start, f"{regression}_head" if predicts else "", tuple(losses)))
            start += dims.lengths[m]
        return tuple(plan)

    def construct(self, *batch):  # PRETRAIN_COLUMNS (+ DIR_COLUMNS with DIR), by name through self.at
        at = self.at
        states, mask = self.net.encode(*batch[:len(INPUT_COLUMNS)])
        zero = ops.zeros((), ms.float32)
        losses = ()
        for prefix, start, predictor, masked in self.masked_plan:
            chosen = gather_positions(states, batch[at[prefix + "_positions"]] + start)
            weights, targets = batch[at[prefix + "_weights"]], batch[at[prefix + "_targets"]]
            predicted = getattr(self, predictor)(chosen) if predictor else chosen
            for kind, head, classes in masked:
                if kind == "vocab":
                    logits = getattr(self, head)(chosen, self.net.word_embedding_table())
                    losses = losses + (self.cross_entropy(logits, targets, weights),)
                elif kind == "regression":
                    losses = losses + (self.regression(predicted, targets, weights),)
                elif kind == "classes":  # Dense multiplies [B * N, H] rows, not a broadcast weight
                    logits = getattr(self, head)(chosen)
                    losses = losses + (self.region_kl(logits, batch[at[classes[0]]], batch[at[classes[1]]], weights),)
                elif kind == "nce":
                    losses = losses + (self.feature_nce(predicted, targets, weights),)
                else:
                    losses = losses + (zero,)
        match = dtr = dir_ = zero
        if self.use["match"]:
            match = self.matching(self.match_head(states[:, 0]), batch[at["match_label"]], batch[at["match_weight"]])
        if self.use["dtr"]:
            dtr = self.dtr_loss(batch[at["text_target_ids"]], states, mask, batch[at["dtr_weight"]])
        if self.use["dir"]:
            dir_ = self.dir_loss(batch[at["image_codes"]], states, mask, batch[at["dir_weight"]])
        losses = ops.stack(losses + (match, dtr, dir_))
        total = (losses * ms.Tensor(self.weights, ms.float32)).sum()
        return total, losses

    def dtr_loss(self, target_ids, memory, memory_mask, row_weights):
        """Teacher-forced reconstruction of the (unmasked) text: predict piece i+1 from pieces <= i."""
        inputs, targets = target_ids[:, :-1], target_ids[:, 1:]
        hidden = self.net.text_decoder(inputs, memory, memory_mask)
        logits = self.dtr_head(hidden, self.net.word_embedding_table())
        weights = (targets > 0).astype(ms.float32) * row_weights.expand_dims(1)
        return self.cross_entropy(logits, targets, weights)


    def dir_loss(self, codes, memory, memory_mask, row_weights):
        """Teacher-forced reconstruction of the image's dVAE codes (row-major): predict code i from codes < i."""
        start = ops.full((codes.shape[0], 1), self.net.vision_decoder.start_id, dtype=ms.int32)
        hidden = self.net.vision_decoder(ops.concat((start, codes[:, :-1]), 1), memory, memory_mask)
        weights = ops.ones(codes.shape, ms.float32) * row_weights.expand_dims(1)
        logits = self.dir_head(hidden)
        return self.cross_entropy(logits, codes, weights)


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
