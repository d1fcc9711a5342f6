"""Further modalities (src/modality.py FURTHER, registered by a plugin): a sample names its precomputed features
file (.npz) under the modality's name in a manifest; preparation reads it by the modality's kind (regions: features
and boxes as src/data/image.py reads precomputed regions; frames: features in time order as src/data/audio.py
reads precomputed frames), checks that every sample's feature width agrees, and stores it as the modality's shard
columns."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from src.config import ImageFeatureConfig
from src.data.audio import load_npz_frames
from src.data.errors import FeatureError
from src.data.image import load_npz_regions
from src.data.records import encode_features
from src.modality import FURTHER, SPECS


def read_features(modality: str, path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(features [N, D] float32, boxes [N, BOX_DIM] or None) of one sample's file (training cuts them to the
    modality's budget)."""
    if not path.endswith(".npz"):
        raise FeatureError(f"{modality}: a further modality reads precomputed features (.npz), got {path}")
    if SPECS[modality].kind == "regions":
        regions = load_npz_regions(path, ImageFeatureConfig(max_regions=2 ** 31, thumb_size=0))
        return regions.features, regions.boxes
    if SPECS[modality].kind == "frames":
        return load_npz_frames(path), None
    raise FeatureError(f"{modality}: preparation reads regions or frames, not '{SPECS[modality].kind}'")


def stored_columns(modality: str, features: Optional[np.ndarray], boxes: Optional[np.ndarray]) -> Dict[str, object]:
    """The shard columns of `modality` for one sample (empty ones without features)."""
    spec = SPECS[modality]
    n = 0 if features is None else len(features)
    out = {spec.stored[0]: encode_features(features) if n else b"", spec.stored[-1]: n}
    if spec.kind == "regions":
        out[spec.stored[1]] = boxes.reshape(-1).astype(np.float32) if n else np.zeros(0, np.float32)
    return out


def sample_features(sample, dims: Dict[str, int]) -> Dict[str, tuple]:
    """Every further modality's (features, boxes) of `sample` (its `further` files); the first sample with one fixes
    its width in `dims`, and a later one of another width is a FeatureError naming both."""
    out = {}
    for modality in FURTHER:
        path = sample.further.get(modality)
        if not path:
            out[modality] = (None, None)
            continue
        features, boxes = read_features(modality, path)
        dims.setdefault(modality, features.shape[1])
        if features.shape[1] != dims[modality]:
            raise FeatureError(f"{modality} features have dim {features.shape[1]}, expected {dims[modality]}")
        out[modality] = (features, boxes)
    return out
