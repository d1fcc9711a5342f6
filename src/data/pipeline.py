"""The training input pipeline: `MindDataset` over the shards -> per-rank epoch order -> batches of static shape with
pre-training masks and matching negatives.

Order and corruption are functions of (seed, epoch, sample index) only, so the same seed and epoch give the same
batches whatever the worker count, and a run resumed at batch k of epoch e sees exactly what it would have seen.
Ranks take disjoint slices of each epoch's permutation (MindDataset's own `num_shards` pads shards by repeating samples
and cannot start mid-epoch, so the split is done here and handed to it as a sampler).

Which losses see which rows (the pre-training cell relies on this):
- every row gets token-level masking, so a masked input is no hint of a matching positive;
- rows chosen as matching negatives (cases 1-4) carry only the matching loss: their token-level, DTR and DIR weights
  are 0 and no modality is dropped;
- the other rows may lose modalities; their matching weight is 1 only when all three modalities are present and kept;
- a dropped modality carries no token-level loss; DTR reconstructs the text even when it was dropped (its weight
  depends only on the row having text).

Retrieval fine-tuning (`objective="retrieval"`) corrupts nothing: each row gets a fingerprint of each of its inputs
(`src/data/content.py`: rows with the same image, caption or recording are no negatives of each other), a view (the
modalities its matching rows show) and the modality its hard negative swaps; the negative itself is mined in the
train step (`src/tasks/retrieval.py`), where the embeddings are. Text generation (`objective="caption"`) corrupts nothing either:
each row gets the input set its decoder reads (`sources`, tuples of modality indices) and a weight.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from src.config import DataConfig
from src.data.content import fingerprints
from src.data.masking import (AUDIO, IMAGE, TEXT, choose_positions, drop_modalities, mask_features, mask_text,
                              matching_cases, matching_donors, max_predictions, retrieval_views, caption_views)
from src.data.records import PreparedData, decode_features, open_prepared

READ_COLUMNS = ["index", "text_ids", "n_text", "image_feat", "image_boxes", "mrc_ids", "mrc_probs", "n_regions",
                "audio_feat", "n_audio", "labels", "n_labels"]
INPUT_COLUMNS = ["text_ids", "text_mask", "image_feat", "image_boxes", "image_mask", "audio_feat", "audio_mask"]
COLUMNS_OF = {"text": ("text_ids", "text_mask"), "image": ("image_feat", "image_boxes", "image_mask"),
              "audio": ("audio_feat", "audio_mask")}  # the input columns of each modality
PRETRAIN_COLUMNS = INPUT_COLUMNS + [
    "text_target_ids", "mlm_positions", "mlm_targets", "mlm_weights",
    "mvm_positions", "mvm_weights", "mvm_targets", "mrc_target_ids", "mrc_target_probs",
    "mam_positions", "mam_weights", "mam_targets",
    "match_label", "match_weight", "dtr_weight"]
RETRIEVAL_COLUMNS = INPUT_COLUMNS + ["present", "content", "view", "swap"]
DIR_COLUMNS = ["image_codes", "dir_weight"]  # appended to PRETRAIN_COLUMNS when the data's dVAE codes are used
CAPTION_COLUMNS = INPUT_COLUMNS + ["view", "row_weight", "decoder_start"]
EVAL_COLUMNS = INPUT_COLUMNS + ["index", "row_valid", "labels"]
OBJECTIVES = {"pretrain": PRETRAIN_COLUMNS, "retrieval": RETRIEVAL_COLUMNS, "caption": CAPTION_COLUMNS}


def epoch_indices(count: int, seed: int, epoch: int, shuffle: bool, num_shards: int = 1, shard_id: int = 0,
                  drop_last: bool = True) -> np.ndarray:
    """This rank's sample indices for one epoch. With drop_last every rank gets the same number (the few samples that
    do not divide evenly wait for a later epoch's permutation); without it the ranks cover every sample once."""
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id {shard_id} is outside 0..{num_shards - 1}")
    order = np.random.default_rng([seed, epoch]).permutation(count) if shuffle else np.arange(count)
    if drop_last:
        order = order[:count - count % num_shards]
    return order[shard_id::num_shards]


class Collator:
    """Rows of a batch -> padded arrays of static shape (+ masks and matching negatives when training)."""

    def __init__(self, data: PreparedData, cfg: DataConfig, training: bool, epoch: int = 0,
                 objective: str = "pretrain", sources=((IMAGE,),), codes: Optional[np.ndarray] = None,
                 starts: Optional[np.ndarray] = None):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown training objective '{objective}' (known: {', '.join(OBJECTIVES)})")
        self.cfg, self.training, self.epoch, self.objective = cfg, training, epoch, objective
        self.sources = sources
        self.codes = codes  # pretraining with DIR: the split's dVAE codes [samples, grid^2], -1 rows without image
        self.starts = starts  # text generation: the decoder's start piece of each sample (its language)
        self.num_labels = max(1, len(data.labels))  # a static [B, classes] column even for an unlabelled set
        self.image_dim, self.audio_dim, self.top_k = data.image_dim, data.audio_dim, data.mrc_top_k
        self.standardizers = {m: data.standardizer(m) for m in ("image", "audio")}
        ids = data.meta["text"]["special_ids"]
        self.pad, self.cls, self.sep, self.mask = ids["[PAD]"], ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
        self.replacement_ids = np.setdiff1d(np.arange(data.meta["text"]["vocab_size"]), list(ids.values()))
        p = cfg.token_mask_prob
        self.slots = (max_predictions(cfg.max_text_len - 2, p), max_predictions(cfg.max_regions, p),
                      max_predictions(cfg.max_audio_tokens, p))

    def __call__(self, index, text_ids, n_text, image_feat, image_boxes, mrc_ids, mrc_probs, n_regions, audio_feat,
                 n_audio, labels, n_labels, batch_info=None):
        batch = self.pad_batch(index, text_ids, n_text, image_feat, image_boxes, mrc_ids, mrc_probs, n_regions,
                               audio_feat, n_audio, labels, n_labels)
        if not self.training:
            return tuple(batch[c] for c in EVAL_COLUMNS)
        rng = np.random.default_rng([self.cfg.seed, self.epoch, int(batch["index"][0])])
        if self.objective == "retrieval":
            batch["present"] = modalities_present(batch).astype(np.float32)
            batch["content"] = np.stack([fingerprints([batch[c] for c in COLUMNS_OF[m]], np.int32)
                                         for m in COLUMNS_OF], 1)
            batch["view"], batch["swap"] = retrieval_views(batch["present"] > 0, rng)
            return tuple(batch[c] for c in RETRIEVAL_COLUMNS)
        if self.objective == "caption":
            batch["view"], batch["row_weight"] = caption_views(modalities_present(batch), self.sources, rng)
            batch["decoder_start"] = self.starts[batch["index"]]
            return tuple(batch[c] for c in CAPTION_COLUMNS)
        out = corrupt(batch, self, rng)
        if self.codes is None:
            return tuple(out[c] for c in PRETRAIN_COLUMNS)
        codes = self.codes[batch["index"]]
        has_codes = codes[:, 0] >= 0
        out["image_codes"] = np.where(has_codes[:, None], codes, 0).astype(np.int32)
        # the image is reconstructed from whatever the encoder was shown (even with the image dropped), except on
        # matching negatives (their inputs are another sample's)
        out["dir_weight"] = (has_codes & (out["match_label"] == 0)).astype(np.float32)
        return tuple(out[c] for c in PRETRAIN_COLUMNS + DIR_COLUMNS)

    def pad_batch(self, index, text_ids, n_text, image_feat, image_boxes, mrc_ids, mrc_probs, n_regions, audio_feat,
                  n_audio, labels=None, n_labels=None) -> dict:
        """Stored rows (features as float16 bytes or float32 arrays) -> padded arrays; features standardised with
        the training split's statistics (meta.json)."""
        cfg, n, k = self.cfg, len(index), self.top_k
        size = n if self.training else cfg.batch_size  # evaluation pads the last batch and marks the padding rows
        lt, nv, na = cfg.max_text_len, cfg.max_regions, cfg.max_audio_tokens
        out = {
            "index": np.full(size, -1, np.int32), "row_valid": np.zeros(size, np.float32),
            "text_ids": np.full((size, lt), self.pad, np.int32), "text_mask": np.zeros((size, lt), np.float32),
            "image_feat": np.zeros((size, nv, self.image_dim), np.float32),
            "image_boxes": np.zeros((size, nv, 7), np.float32), "image_mask": np.zeros((size, nv), np.float32),
            "mrc_ids": np.zeros((size, nv, k), np.int32), "mrc_probs": np.zeros((size, nv, k), np.float32),
            "audio_feat": np.zeros((size, na, self.audio_dim), np.float32),
            "audio_mask": np.zeros((size, na), np.float32),
            "labels": np.zeros((size, self.num_labels), np.float32),  # multi-hot
        }
        out["text_ids"][:, 0] = self.cls
        out["text_mask"][:, 0] = 1.0  # [CLS] heads the joint sequence even when a row has no text
        for i in range(n):
            out["index"][i], out["row_valid"][i] = index[i], 1.0
            t = np.reshape(text_ids[i], -1)[:min(int(n_text[i]), lt - 2)]
            if len(t):
                out["text_ids"][i, 1:len(t) + 1] = t
                out["text_ids"][i, len(t) + 1] = self.sep
                out["text_mask"][i, :len(t) + 2] = 1.0
            r = min(int(n_regions[i]), nv)
            if r:
                out["image_feat"][i, :r] = self.features("image", image_feat[i], r, self.image_dim)
                out["image_boxes"][i, :r] = np.reshape(image_boxes[i], -1)[:r * 7].reshape(r, 7)
                out["mrc_ids"][i, :r] = np.reshape(mrc_ids[i], -1)[:r * k].reshape(r, k)
                out["mrc_probs"][i, :r] = np.reshape(mrc_probs[i], -1)[:r * k].reshape(r, k)
                out["image_mask"][i, :r] = 1.0
            a = min(int(n_audio[i]), na)
            if a:
                out["audio_feat"][i, :a] = self.features("audio", audio_feat[i], a, self.audio_dim)
                out["audio_mask"][i, :a] = 1.0
            if labels is not None:
                out["labels"][i, np.reshape(labels[i], -1)[:int(n_labels[i])]] = 1.0
        return out

    def features(self, modality: str, stored, n: int, dim: int) -> np.ndarray:
        """The first n feature rows of one sample, standardised: stored float16 bytes, or a float32 array (features
        extracted from a file at inference time, rounded as stored ones are)."""
        if isinstance(stored, np.ndarray) and stored.dtype == np.float32:
            x = as_stored(np.reshape(stored, -1)[:n * dim].reshape(n, dim))
        else:
            x = decode_features(stored, n, dim)
        return standardize(x, self.standardizers[modality])


def as_stored(features: np.ndarray) -> np.ndarray:
    """Fresh features rounded to float16, as preparation stores them, so that a file seen at inference gives the
    model what training gave it."""
    return np.asarray(features, np.float16).astype(np.float32)


def standardize(features: np.ndarray, stats) -> np.ndarray:
    """Features -> model inputs: (x - mean) / std of the training split (`PreparedData.standardizer`; None:
    unchanged)."""
    return features if stats is None else (features - stats[0]) * stats[1]


def modalities_present(b: dict) -> np.ndarray:
    """[B, 3] bool: which of text, image, audio each row has."""
    return np.stack([b["text_mask"][:, 1] > 0, b["image_mask"][:, 0] > 0, b["audio_mask"][:, 0] > 0], 1)


def drop_probs(cfg: DataConfig) -> np.ndarray:
    """[3] the probability that modality-level masking drops text, image, audio."""
    from src.config import ConfigError
    if not cfg.modality_drop_probs:
        return np.full(3, cfg.modality_drop_prob)
    probs = np.asarray(cfg.modality_drop_probs, np.float64)
    if probs.shape != (3,) or ((probs < 0) | (probs >= 1)).any():
        raise ConfigError(f"data.modality_drop_probs must be 3 probabilities in [0, 1) (text, image, audio), "
                          f"got {cfg.modality_drop_probs}")
    return probs


def corrupt(b: dict, col: Collator, rng: np.random.Generator) -> dict:
    """Matching negatives, modality drops and token masks for one padded batch (see the module doc for which row
    carries which loss)."""
    cfg = col.cfg
    present = modalities_present(b)
    donors, cases = matching_donors(matching_cases(present.all(1), cfg.match_case_probs, rng), rng)
    for key in ("text_ids", "text_mask"):
        b[key] = b[key][donors[:, TEXT]]
    for key in ("image_feat", "image_boxes", "image_mask", "mrc_ids", "mrc_probs"):
        b[key] = b[key][donors[:, IMAGE]]
    for key in ("audio_feat", "audio_mask"):
        b[key] = b[key][donors[:, AUDIO]]
    negative = cases > 0
    keep = np.where(negative[:, None], present, drop_modalities(present, drop_probs(cfg), rng))
    token_rows = (~negative).astype(np.float32)

    out = {"text_target_ids": b["text_ids"].copy(), "image_boxes": b["image_boxes"],
           "match_label": np.maximum(cases, 0).astype(np.int32),
           "match_weight": ((cases >= 0) & keep.all(1)).astype(np.float32),
           "dtr_weight": (present[:, TEXT] & ~negative).astype(np.float32)}

    words = b["text_mask"].copy()
    words[:, 0] = 0.0
    words[np.arange(len(words)), (b["text_mask"].sum(1) - 1).astype(int)] = 0.0  # [SEP] is never a target
    pos, w = choose_positions(words > 0, cfg.token_mask_prob, col.slots[TEXT], rng)
    out["text_ids"], out["mlm_targets"] = mask_text(b["text_ids"], pos, w, rng, col.mask, col.replacement_ids)
    out["mlm_positions"], out["mlm_weights"] = pos, w * (token_rows * keep[:, TEXT])[:, None]

    pos, w = choose_positions(b["image_mask"] > 0, cfg.token_mask_prob, col.slots[IMAGE], rng)
    out["image_feat"], out["mvm_targets"] = mask_features(b["image_feat"], pos, w)
    out["mrc_target_ids"] = np.take_along_axis(b["mrc_ids"], pos[:, :, None], 1).astype(np.int32)
    out["mrc_target_probs"] = np.take_along_axis(b["mrc_probs"], pos[:, :, None], 1).astype(np.float32)
    out["mvm_positions"], out["mvm_weights"] = pos, w * (token_rows * keep[:, IMAGE])[:, None]

    pos, w = choose_positions(b["audio_mask"] > 0, cfg.token_mask_prob, col.slots[AUDIO], rng)
    out["audio_feat"], out["mam_targets"] = mask_features(b["audio_feat"], pos, w)
    out["mam_positions"], out["mam_weights"] = pos, w * (token_rows * keep[:, AUDIO])[:, None]

    # a dropped modality disappears from the encoder input entirely
    text_mask = b["text_mask"] * keep[:, TEXT:TEXT + 1]
    text_mask[:, 0] = 1.0
    out["text_mask"] = text_mask
    out["text_ids"] = np.where(text_mask > 0, out["text_ids"], col.pad).astype(np.int32)
    out["image_mask"] = b["image_mask"] * keep[:, IMAGE:IMAGE + 1]
    out["audio_mask"] = b["audio_mask"] * keep[:, AUDIO:AUDIO + 1]
    out["image_feat"] *= out["image_mask"][:, :, None]
    out["audio_feat"] *= out["audio_mask"][:, :, None]
    return out


def create_dataset(data, cfg: DataConfig, split: Optional[str] = None, training: bool = True, epoch: int = 0,
                   num_shards: int = 1, shard_id: int = 0, start_batch: int = 0, objective: str = "pretrain",
                   sources=((IMAGE,),), codes: Optional[np.ndarray] = None, starts: Optional[np.ndarray] = None):
    """One epoch of batches for this rank, starting at batch `start_batch` (for exact resume). Training batches carry
    the columns of `objective` (OBJECTIVES); evaluation batches carry EVAL_COLUMNS and keep every sample."""
    import mindspore.dataset as ds
    data = data if isinstance(data, PreparedData) else open_prepared(data)
    split = split or (cfg.train_split if training else cfg.eval_split)
    indices = epoch_indices(data.count(split), cfg.seed, epoch, cfg.shuffle and training, num_shards, shard_id,
                            drop_last=training)
    indices = indices[start_batch * cfg.batch_size:]
    if training and len(indices) < cfg.batch_size:
        raise ValueError(f"split '{split}' gives this rank {len(indices)} samples, fewer than one batch of "
                         f"{cfg.batch_size}")
    dataset = ds.MindDataset(data.files(split), columns_list=READ_COLUMNS, sampler=ds.SubsetSampler(indices.tolist()))
    columns = OBJECTIVES[objective] if training else EVAL_COLUMNS
    if training and codes is not None:
        columns = columns + DIR_COLUMNS
    collate = Collator(data, cfg, training, epoch, objective, sources, codes, starts)
    return dataset.batch(cfg.batch_size, drop_remainder=training, num_parallel_workers=max(1, cfg.workers),
                         per_batch_map=collate, input_columns=READ_COLUMNS, output_columns=columns)


def steps_per_epoch(data, cfg: DataConfig, split: Optional[str] = None, num_shards: int = 1) -> int:
    data = data if isinstance(data, PreparedData) else open_prepared(data)
    return data.count(split or cfg.train_split) // num_shards // cfg.batch_size


def training_data(cfg: DataConfig, objective: str, num_shards: int = 1, shard_id: int = 0, sources=((IMAGE,),),
                  dvae=None):
    """What a trainable task needs from its data: (prepared data, make_dataset(epoch, start_batch), batches per
    epoch for this rank). `sources`: the input sets of the caption objective; `dvae` (a DVAEConfig): pre-training
    with DIR reads the data's stored codes, checked against it."""
    from src.config import ConfigError
    if not cfg.path:
        raise ConfigError("data.path is empty: point it at a prepared dataset (scripts/prepare_data.sh)")
    data = open_prepared(cfg.path)
    warn_audio_cut(data, cfg.train_split, cfg.max_audio_tokens)
    codes = starts = None
    if objective == "caption":
        starts = decoder_starts(data, cfg.train_split)
    if dvae is not None:
        from src.data.codes import load_codes
        codes = load_codes(data, cfg.train_split, dvae)

    def make_dataset(epoch: int, start_batch: int):
        return create_dataset(data, cfg, training=True, epoch=epoch, num_shards=num_shards, shard_id=shard_id,
                              start_batch=start_batch, objective=objective, sources=sources, codes=codes,
                              starts=starts)

    return data, make_dataset, steps_per_epoch(data, cfg, num_shards=num_shards)


def decoder_starts(data: PreparedData, split: str) -> np.ndarray:
    """[samples] int32: the text decoder's start piece of each sample of `split`, by its language."""
    from src.data.tokenizer import decoder_start_ids
    langs = data.read_columns(split, ["lang"])["lang"]
    return decoder_start_ids(data.vocab_path, langs, data.meta["text"]["special_ids"]["[CLS]"])


def warn_audio_cut(data: PreparedData, split: str, max_tokens: int) -> int:
    """Say how many samples of `split` have more audio than the model's max_audio_tokens (the batches keep only their
    start); returns that count."""
    lengths = np.array(data.read_columns(split, ["n_audio"])["n_audio"])
    cut = int((lengths > max_tokens).sum())
    if cut:
        seconds = data.audio_token_seconds()
        lost = (lengths[lengths > max_tokens] - max_tokens).sum() * seconds
        print(f"warning: {data.root} [{split}]: {cut} of {len(lengths)} samples have more than "
              f"data.max_audio_tokens={max_tokens} audio tokens ({max_tokens * seconds:.2f} s); "
              f"{lost:.0f} s of audio in all is cut", flush=True)
    return cut
