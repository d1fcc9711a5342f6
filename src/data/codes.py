"""dVAE codes stored with the prepared data, so that pre-training (DIR) and text-to-image never run the dVAE encoder:
PREPARED/image_codes/<split>.npy (int32 [samples, grid^2]: the argmax codes of each sample's thumbnail, -1 for a
sample without one) and PREPARED/image_codes/meta.json (codebook size, image size, grid, the dVAE checkpoint).
Reading them; `python -m src.tasks.dvae_codes` (src/tasks/dvae_codes.py) writes them. Readers check the codebook and
image size against their recipe.
"""
from __future__ import annotations

import json

import numpy as np

from src.config import ConfigError, DVAEConfig
from src.data.records import DatasetError, PreparedData

DIRECTORY = "image_codes"


def codes_meta(data: PreparedData) -> dict:
    """The stored codes' meta.json: codebook_size, image_size, grid and the dVAE checkpoint they came from."""
    meta_path = data.root / DIRECTORY / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{data.root} has no dVAE codes ({DIRECTORY}/): train a dVAE (config/dvae_*.yaml), then "
                           f"python -m src.tasks.dvae_codes --dvae RUN --data {data.root}")
    return json.loads(meta_path.read_text())


def load_codes(data: PreparedData, split: str, dvae: DVAEConfig) -> np.ndarray:
    """The stored codes of `split` [samples, grid^2] (-1 rows: no image); refuses codes of another codebook."""
    meta_path = data.root / DIRECTORY / "meta.json"
    meta = codes_meta(data)
    if meta["codebook_size"] != dvae.codebook_size:
        raise ConfigError(f"{meta_path}: codes over {meta['codebook_size']} codes, but dvae.codebook_size is "
                          f"{dvae.codebook_size}; extract them again with the dVAE of this recipe")
    size = data.meta["prepare"]["image"].get("thumb_size", 0)
    if meta["image_size"] != size:
        raise ConfigError(f"{meta_path}: codes of {meta['image_size']}px images, but the data's thumbnails are "
                          f"{size}px; extract them again")
    codes = np.load(data.root / DIRECTORY / f"{split}.npy")
    if len(codes) != data.count(split):
        raise DatasetError(f"{data.root / DIRECTORY / split}.npy has {len(codes)} rows for {data.count(split)} "
                           "samples: extract the codes again")
    return codes
