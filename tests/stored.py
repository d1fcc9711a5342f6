"""What the tests read back and compare against, and the project itself never needs: a prepared set's MindRecord row
as shaped arrays, and the regions of one image file."""
from __future__ import annotations

from typing import Dict

import numpy as np

from src.config import ImageFeatureConfig
from src.data.extractors import image_regions_batch
from src.data.image import Regions, load_npz_regions, read_image, thumbnail
from src.data.records import decode_features


def decode_row(row: Dict[str, np.ndarray], image_dim: int, audio_dim: int, top_k: int = 1) -> dict:
    """A MindRecord row back into shaped arrays (the inverse of the flat storage); features are the raw stored ones."""
    n_regions, n_audio = int(row["n_regions"]), int(row["n_audio"])
    flat = lambda key, n: np.reshape(row[key], -1)[:n]
    return {
        "index": int(row["index"]),
        "text_ids": flat("text_ids", int(row["n_text"])),
        "image_feat": decode_features(row["image_feat"], n_regions, image_dim),
        "image_boxes": flat("image_boxes", n_regions * 7).reshape(n_regions, 7),
        "mrc_ids": flat("mrc_ids", n_regions * top_k).reshape(n_regions, top_k),
        "mrc_probs": flat("mrc_probs", n_regions * top_k).reshape(n_regions, top_k),
        "audio_feat": decode_features(row["audio_feat"], n_audio, audio_dim),
        "labels": flat("labels", int(row["n_labels"])),
    }


def image_regions(path: str, cfg: ImageFeatureConfig) -> Regions:
    """The regions of one image file (or precomputed `.npz`), with its thumbnail."""
    if path.endswith(".npz"):
        return load_npz_regions(path, cfg)
    image = read_image(path)
    regions = image_regions_batch([image], cfg)[0]
    regions.thumb = thumbnail(image, cfg.thumb_size)
    return regions
