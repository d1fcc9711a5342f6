"""What each training objective adds to a padded batch, by name (`training_data(cfg, objective)`). An objective is
a class: built once per epoch from the prepared data and the data config, called on each padded batch with that
batch's random generator, it returns the batch's columns; `columns` names them in the order the task's loss cell
takes them. A task with another objective registers it here from its own module (`register_objective`).

Which losses see which rows in pre-training (the pre-training cell relies on this):
- every row gets token-level masking, so a masked input is no hint of a matching positive;
- rows chosen as matching negatives (cases 1-4) carry only the matching loss: their token-level, DTR and DIR weights
  are 0 and no modality is dropped;
- the other rows may lose modalities; their matching weight is 1 only when all three modalities are present and kept;
- a dropped modality carries no token-level loss; DTR reconstructs the text even when it was dropped (its weight
  depends only on the row having text).

Retrieval fine-tuning corrupts nothing: each row gets a fingerprint of each of its inputs (`src/data/content.py`:
rows with the same image, caption or recording are no negatives of each other), a view (the modalities its matching
rows show) and the modality its hard negative swaps; the negative itself is mined in the train step
(`src/tasks/retrieval.py`), where the embeddings are. Text generation corrupts nothing either: each row gets the input
set its decoder reads (`sources`, tuples of modality indices) and a weight.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from src.config import ConfigError, DataConfig
from src.data.content import fingerprints
from src.data.masking import (caption_views, choose_positions, drop_modalities, mask_features, mask_text,
                              matching_cases, matching_donors, max_predictions, retrieval_views)
from src.data.padding import modalities_present
from src.data.records import PreparedData
from src.modality import (COLUMNS_OF, IMAGE, INPUT_COLUMNS, MODALITIES, PAPER_MODALITIES, SPECS, TEXT,
                          mask_budget)


def target_column(stored: str) -> str:
    """The pre-training column of a stored class target at the masked positions: mrc_ids -> mrc_target_ids."""
    head, _, tail = stored.partition("_")
    return f"{head}_target_{tail}"


# the inputs, then per modality its masked positions, their weights and targets (and a regions modality's class
# targets), then matching and DTR (the loss cell reads them by name)
# the modalities of the paper's 5-way matching (src/data/masking.py MATCH_CASES), by index
MATCHED = tuple(MODALITIES.index(m) for m in PAPER_MODALITIES)
PRETRAIN_COLUMNS = INPUT_COLUMNS + ["text_target_ids"] + [
    column for spec in SPECS.values()
    for column in [f"{spec.mask_prefix}_positions", f"{spec.mask_prefix}_weights", f"{spec.mask_prefix}_targets"]
    + [target_column(c) for c in spec.class_columns]] + [
    "match_label", "match_weight", "dtr_weight"]
DIR_COLUMNS = ["image_codes", "dir_weight"]  # appended to PRETRAIN_COLUMNS when the data's dVAE codes are used
RETRIEVAL_COLUMNS = INPUT_COLUMNS + ["present", "content", "view", "swap"]
CAPTION_COLUMNS = INPUT_COLUMNS + ["view", "row_weight", "decoder_start"]


class Pretrain:
    """Matching negatives, modality drops and token masks; with `codes` (the split's dVAE codes [samples, grid^2],
    -1 for samples without an image) the DIR targets."""

    def __init__(self, data: PreparedData, cfg: DataConfig, codes: Optional[np.ndarray] = None):
        self.cfg, self.codes = cfg, codes
        self.columns = PRETRAIN_COLUMNS + (DIR_COLUMNS if codes is not None else [])
        ids = data.meta["text"]["special_ids"]
        self.pad, self.mask = ids["[PAD]"], ids["[MASK]"]
        self.replacement_ids = np.setdiff1d(np.arange(data.meta["text"]["vocab_size"]), list(ids.values()))
        self.slots = tuple(max_predictions(mask_budget(m, cfg), cfg.token_mask_prob) for m in MODALITIES)
        self.drop_probs = drop_probs(cfg)

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        out = corrupt(batch, self, rng)
        if self.codes is None:
            return out
        codes = self.codes[batch["index"]]
        has_codes = codes[:, 0] >= 0
        out["image_codes"] = np.where(has_codes[:, None], codes, 0).astype(np.int32)
        # the image is reconstructed from whatever the encoder was shown (even with the image dropped), except on
        # matching negatives (their inputs are another sample's)
        out["dir_weight"] = (has_codes & (out["match_label"] == 0)).astype(np.float32)
        return out


class Retrieval:
    """Per row: which modalities it has, a fingerprint of each input, a matching view and the modality to swap."""
    columns = RETRIEVAL_COLUMNS

    def __init__(self, data: PreparedData, cfg: DataConfig):
        pass

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        batch["present"] = modalities_present(batch).astype(np.float32)
        batch["content"] = np.stack([fingerprints([batch[c] for c in COLUMNS_OF[m]], np.int32) for m in MODALITIES],
                                    1)
        batch["view"], batch["swap"] = retrieval_views(batch["present"] > 0, rng)
        return batch


class Caption:
    """Per row: the input set its decoder reads (one of `sources`), its weight and the decoder's start piece (its
    language; `starts` [samples])."""
    columns = CAPTION_COLUMNS

    def __init__(self, data: PreparedData, cfg: DataConfig, sources=((IMAGE,),), starts: np.ndarray = None):
        self.sources, self.starts = sources, starts

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        batch["view"], batch["row_weight"] = caption_views(modalities_present(batch), self.sources, rng)
        batch["decoder_start"] = self.starts[batch["index"]]
        return batch


OBJECTIVES: Dict[str, type] = {"pretrain": Pretrain, "retrieval": Retrieval, "caption": Caption}


def register_objective(name: str, objective: type) -> None:
    OBJECTIVES[name] = objective


def make_objective(name: str, data: PreparedData, cfg: DataConfig, **options):
    if name not in OBJECTIVES:
        raise ValueError(f"unknown training objective '{name}' (known: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name](data, cfg, **options)


def drop_probs(cfg: DataConfig) -> np.ndarray:
    """[modalities] the probability that modality-level masking drops each modality."""
    if not cfg.modality_drop_probs:
        return np.full(len(MODALITIES), cfg.modality_drop_prob)
    probs = np.asarray(cfg.modality_drop_probs, np.float64)
    if probs.shape != (len(MODALITIES),) or ((probs < 0) | (probs >= 1)).any():
        raise ConfigError(f"data.modality_drop_probs must be {len(MODALITIES)} probabilities in [0, 1) "
                          f"({', '.join(MODALITIES)}), got {cfg.modality_drop_probs}")
    return probs


def corrupt(b: dict, objective: Pretrain, rng: np.random.Generator) -> dict:
    """Matching negatives, modality drops and token masks for one padded batch (see the module doc for which row
    carries which loss)."""
    cfg = objective.cfg
    present = modalities_present(b)
    donors, cases = matching_donors(matching_cases(present[:, list(MATCHED)].all(1), cfg.match_case_probs, rng), rng)
    for i, spec in enumerate(SPECS.values()):  # a matched modality's columns (and class targets) come from its donor
        if i in MATCHED:
            for key in spec.columns + spec.class_columns:
                b[key] = b[key][donors[:, MATCHED.index(i)]]
    negative = cases > 0
    keep = np.where(negative[:, None], present, drop_modalities(present, objective.drop_probs, rng))
    token_rows = (~negative).astype(np.float32)

    out = {"text_target_ids": b["text_ids"].copy(),
           "match_label": np.maximum(cases, 0).astype(np.int32),
           "match_weight": ((cases >= 0) & keep[:, list(MATCHED)].all(1)).astype(np.float32),
           "dtr_weight": (present[:, TEXT] & ~negative).astype(np.float32)}
    for i, spec in enumerate(SPECS.values()):
        prefix = spec.mask_prefix
        if spec.kind == "tokens":
            ids, mask = spec.columns
            words = b[mask].copy()
            words[:, 0] = 0.0
            words[np.arange(len(words)), (b[mask].sum(1) - 1).astype(int)] = 0.0  # [SEP] is never a target
            pos, w = choose_positions(words > 0, cfg.token_mask_prob, objective.slots[i], rng)
            out[ids], out[f"{prefix}_targets"] = mask_text(b[ids], pos, w, rng, objective.mask,
                                                           objective.replacement_ids)
        else:
            feat, *rest = spec.columns
            pos, w = choose_positions(b[spec.mask] > 0, cfg.token_mask_prob, objective.slots[i], rng)
            out[feat], out[f"{prefix}_targets"] = mask_features(b[feat], pos, w)
            out.update({column: b[column] for column in rest[:-1]})  # boxes stay
            for stored in spec.class_columns:
                out[target_column(stored)] = np.take_along_axis(b[stored], pos[:, :, None], 1).astype(b[stored].dtype)
        out[f"{prefix}_positions"], out[f"{prefix}_weights"] = pos, w * (token_rows * keep[:, i])[:, None]

    # a dropped modality disappears from the encoder input entirely
    for i, spec in enumerate(SPECS.values()):
        mask = b[spec.mask] * keep[:, i:i + 1]
        if spec.kind == "tokens":
            mask[:, 0] = 1.0  # [CLS] heads the sequence whatever is dropped
            out[spec.columns[0]] = np.where(mask > 0, out[spec.columns[0]], objective.pad).astype(np.int32)
        else:
            out[spec.columns[0]] *= mask[:, :, None]
        out[spec.mask] = mask
    return out
