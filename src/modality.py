"""The modalities, as data: one spec per modality that the data pipeline, masking, the items loader, the model and
retrieval read (as ImageBind keys its parts by modality). The order of SPECS is the order of the joint sequence, of
every [.., modalities] array (present, view, swap, content) and of the input columns.

A further modality is added without editing src/: a module that calls `register_modality`, named in the environment
variable OPT_PLUGINS (modules separated by commas), which is imported here before anything reads the specs."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Modality:
    name: str
    kind: str                      # how its inputs look, and so its embedding and padding: tokens (word pieces),
    #                                regions (features with BOX_DIM-d boxes) or frames (features in time order)
    columns: Tuple[str, ...]       # its model input columns; the last is its mask [B, L]
    stored: Tuple[str, ...]        # the shard columns it is read from; the last is its length
    budget: str                    # the data config field that bounds its sequence length
    reserved: int                  # positions of that budget that are never masked ([CLS] and [SEP] for text)
    has_features: bool            # its prepared data has features of a width (meta.json: <name>.feature_dim)
    # the pre-training losses over its masked positions, (name, kind): vocab (word pieces), regression (features),
    # classes (a regions modality's stored class targets), nce (features, contrastive; through its regression head)
    masked_losses: Tuple[Tuple[str, str], ...]
    mask_prefix: str               # pre-training columns <prefix>_positions / _weights / _targets

    @property
    def mask(self) -> str:
        return self.columns[-1]

    @property
    def class_columns(self) -> Tuple[str, ...]:
        """A regions modality's stored class targets (between its boxes and its count: mrc_ids, mrc_probs), if any."""
        return self.stored[2:-1] if self.kind == "regions" else ()


BOX_DIM = 7  # a region's box: x1, y1, x2, y2, width, height, area (fractions of the image)

SPECS = {
    "text": Modality("text", "tokens", ("text_ids", "text_mask"), ("text_ids", "n_text"), "max_text_len", 2, False,
                     (("mlm", "vocab"),), "mlm"),
    "image": Modality("image", "regions", ("image_feat", "image_boxes", "image_mask"),
                      ("image_feat", "image_boxes", "mrc_ids", "mrc_probs", "n_regions"), "max_regions", 0,
                      True, (("mvfr", "regression"), ("mrc", "classes")), "mvm"),
    "audio": Modality("audio", "frames", ("audio_feat", "audio_mask"), ("audio_feat", "n_audio"), "max_audio_tokens", 0,
                      True, (("mafr", "regression"), ("mam_nce", "nce")), "mam"),
}


def register_modality(spec: Modality) -> None:
    """Add a modality after the others (a plugin's: see the module doc); the paper's three come first."""
    if spec.name in SPECS:
        raise ValueError(f"modality '{spec.name}' is registered twice")
    taken = {c for s in SPECS.values() for c in s.columns + s.stored}
    if taken & set(spec.columns + spec.stored):
        raise ValueError(f"modality '{spec.name}': columns {sorted(taken & set(spec.columns + spec.stored))} are "
                         "another modality's")
    SPECS[spec.name] = spec


for _plugin in filter(None, (p.strip() for p in os.environ.get("OPT_PLUGINS", "").split(","))):
    importlib.import_module(_plugin)

MODALITIES = tuple(SPECS)
PAPER_MODALITIES = ("text", "image", "audio")  # the paper's: their extractors, the 5-way matching, the tasks' forms
FURTHER = tuple(m for m in MODALITIES if m not in PAPER_MODALITIES)  # a plugin's: precomputed .npz features
TEXT, IMAGE, AUDIO = (MODALITIES.index(m) for m in ("text", "image", "audio"))
COLUMNS_OF = {m: spec.columns for m, spec in SPECS.items()}
INPUT_COLUMNS = [c for spec in SPECS.values() for c in spec.columns]
MASKED_LOSSES = tuple(loss for spec in SPECS.values() for loss, _ in spec.masked_losses)


def parse_input_set(name: str, where: str, allowed: Tuple[str, ...] = MODALITIES) -> Tuple[str, ...]:
    """The project's one notation for a set of inputs: 'audio+image' -> ('image', 'audio'), in the model's order.
    A name outside `allowed` or a repeated one is a ValueError that names `where` (the caller's config key)."""
    parts = [p.strip() for p in name.split("+")]
    unknown = [p for p in parts if p not in allowed]
    if unknown or len(set(parts)) != len(parts) or not name.strip():
        raise ValueError(f"{where}: '{name}' must join {', '.join(allowed)} with '+' (each once), e.g. "
                         f"{'+'.join(allowed[-2:])}")
    return tuple(m for m in MODALITIES if m in parts)


def input_layout() -> Tuple[Tuple[str, int, int], ...]:
    """(modality, its first column in INPUT_COLUMNS, its number of columns) of each modality, in sequence order: how
    the network finds a modality's inputs in the flat tuple of the graph boundary."""
    layout, start = [], 0
    for name, spec in SPECS.items():
        layout.append((name, start, len(spec.columns)))
        start += len(spec.columns)
    return tuple(layout)


def input_index(column: str) -> int:
    """The position of an input column in INPUT_COLUMNS (the model's positional inputs)."""
    return INPUT_COLUMNS.index(column)


def mask_budget(modality: str, data_cfg) -> int:
    """How many positions of `modality` masking may choose from: its budget less the reserved ones."""
    spec = SPECS[modality]
    return getattr(data_cfg, spec.budget) - spec.reserved
