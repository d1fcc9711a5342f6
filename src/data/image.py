"""Image features: grid regions from raw images, or precomputed detector regions from `.npz`.

Every region has a feature vector and the paper's 7-d location [x1, y1, x2, y2, w, h, w*h] (normalised to [0, 1]).
Region-classification (MRC) targets are a class distribution where the regions come with one (the `.npz` class
scores of a detector, EfficientNet-Lite0's per-cell ImageNet classes), else the nearest centroid of a k-means codebook
fitted on training regions during preparation. The pretrained extractors are in src/data/extractors.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from src.config import ImageFeatureConfig
from src.data.archive import read_bytes
from src.data.errors import FeatureError
from src.modality import BOX_DIM

BOX_KEYS = ("norm_bb", "boxes", "bbox")
CLASS_KEYS = ("cls_prob", "class_scores", "soft_labels")


@dataclass
class Regions:
    features: np.ndarray          # [N, D] float32
    boxes: np.ndarray             # [N, 7] float32
    classes: Optional[np.ndarray] = None      # [N] int32 k-means cluster of each region (grid features)
    class_probs: Optional[np.ndarray] = None  # [N, C] class distribution of each region (detector / classifier)
    thumb: Optional[np.ndarray] = None        # [S, S, 3] uint8 RGB thumbnail, for the dVAE

    @property
    def num_classes(self) -> int:
        return 0 if self.class_probs is None else int(self.class_probs.shape[1])


def read_image(path: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] from an image file of any format OpenCV knows; transparency is composited onto white."""
    try:
        data = read_bytes(path)
    except OSError as e:
        raise FeatureError(f"cannot read image: {e}") from None
    return decode_image(data)


def decode_image(encoded: bytes) -> np.ndarray:
    """RGB uint8 [H, W, 3] from the bytes of an image file (as read_image)."""
    data = np.frombuffer(encoded, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise FeatureError("cannot decode image (corrupt or unsupported format)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if min(image.shape[:2]) < 2:
        raise FeatureError(f"image too small: {image.shape[1]}x{image.shape[0]}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def grid_boxes(grid: int) -> np.ndarray:
    """[grid*grid, 7] locations of a regular grid, row by row."""
    edges = np.linspace(0.0, 1.0, grid + 1, dtype=np.float32)
    y1, x1 = np.meshgrid(edges[:-1], edges[:-1], indexing="ij")
    y2, x2 = np.meshgrid(edges[1:], edges[1:], indexing="ij")
    return location_features(np.stack([x1, y1, x2, y2], -1).reshape(-1, 4))


def location_features(xyxy: np.ndarray) -> np.ndarray:
    """[N, 4] normalised corners -> [N, 7] (x1, y1, x2, y2, w, h, w*h)."""
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    return np.concatenate([xyxy, w[:, None], h[:, None], (w * h)[:, None]], 1).astype(np.float32)


def grid_regions(image: np.ndarray, cfg: ImageFeatureConfig) -> Regions:
    """Each of grid x grid cells, resized to patch_pixels^2, becomes one region with its RGB pixels in [0, 1]."""
    side = cfg.grid * cfg.patch_pixels
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    cells = small.reshape(cfg.grid, cfg.patch_pixels, cfg.grid, cfg.patch_pixels, 3).transpose(0, 2, 1, 3, 4)
    features = np.ascontiguousarray(cells.reshape(cfg.grid * cfg.grid, -1))
    return Regions(features, grid_boxes(cfg.grid), thumb=thumbnail(image, cfg.thumb_size))


def thumbnail(image: np.ndarray, size: int) -> Optional[np.ndarray]:
    if size <= 0:
        return None
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def load_npz_regions(path: str, cfg: ImageFeatureConfig) -> Regions:
    """Precomputed regions in the UNITER/paper form: `features` [N, D], `norm_bb` [N, 4|7] (or absolute `boxes` with
    `image_w`/`image_h`), optional class scores `cls_prob` [N, C], optional `thumb` [S, S, 3] uint8 (written by
    scripts/extract_features.sh). Regions beyond cfg.max_regions are cut."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise FeatureError(f"cannot read .npz: {e}") from None
    if "features" not in arrays:
        raise FeatureError(f"no 'features' array in .npz (found {sorted(arrays)})")
    feats = _float32(arrays["features"], "features")
    if feats.ndim != 2 or len(feats) == 0:
        raise FeatureError(f"region features must have shape [N>0, D], got {list(feats.shape)}")
    n = len(feats)
    boxes = _npz_boxes(arrays, n)
    scores = None
    key = next((k for k in CLASS_KEYS if k in arrays), None)
    if key is not None:
        scores = _float32(arrays[key], key)
        if scores.ndim != 2 or len(scores) != n:
            raise FeatureError(f"'{key}' must have shape [{n}, C], got {list(scores.shape)}")
        _check_finite(scores, key)
        scores = scores[:cfg.max_regions]
    _check_finite(feats, "features")
    thumb = _npz_thumb(arrays, cfg.thumb_size)
    return Regions(feats[:cfg.max_regions], boxes[:cfg.max_regions], class_probs=scores, thumb=thumb)


def _float32(array, name: str) -> np.ndarray:
    """An .npz array as float32, or a FeatureError naming it (strings, objects)."""
    try:
        return np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError):
        raise FeatureError(f"'{name}' must be numbers, got {np.asarray(array).dtype}") from None


def _npz_thumb(arrays: dict, size: int) -> Optional[np.ndarray]:
    if "thumb" not in arrays or size <= 0:
        return None
    thumb = np.asarray(arrays["thumb"])
    if thumb.dtype != np.uint8 or thumb.ndim != 3 or thumb.shape[2] != 3:
        raise FeatureError(f"'thumb' must be a uint8 [S, S, 3] image, got {thumb.dtype} {list(thumb.shape)}")
    return thumb if thumb.shape[0] == size else cv2.resize(thumb, (size, size), interpolation=cv2.INTER_AREA)


def _npz_boxes(arrays: dict, n: int) -> np.ndarray:
    key = next((k for k in BOX_KEYS if k in arrays), None)
    if key is None:
        raise FeatureError(f"no boxes in .npz (expected one of {BOX_KEYS})")
    boxes = _float32(arrays[key], key)
    if boxes.ndim != 2 or len(boxes) != n or boxes.shape[1] not in (4, BOX_DIM):
        raise FeatureError(f"'{key}' must have shape [{n}, 4] or [{n}, {BOX_DIM}], got {list(boxes.shape)}")
    _check_finite(boxes, "boxes")
    if key != "norm_bb":
        w, h = _image_size(arrays)
        boxes = boxes[:, :4] / np.array([w, h, w, h], dtype=np.float32)
    return location_features(boxes[:, :4]) if boxes.shape[1] == 4 else boxes


def _image_size(arrays: dict):
    for wk, hk in (("image_w", "image_h"), ("width", "height"), ("img_w", "img_h")):
        if wk in arrays and hk in arrays:
            w, h = float(arrays[wk]), float(arrays[hk])
            if w > 0 and h > 0:
                return w, h
    raise FeatureError("absolute 'boxes' need the image size ('image_w' and 'image_h') to be normalised")


def _check_finite(a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        raise FeatureError(f"'{name}' contains NaN or Inf")


# ----------------------------------------------------------------------------------------------------------------------
# k-means codebook for MRC targets
# ----------------------------------------------------------------------------------------------------------------------
def fit_codebook(features: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding: [k, D] float32 centroids."""
    rng = np.random.default_rng(seed)
    x = np.asarray(features, dtype=np.float64)
    k = min(k, len(x))
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
        centers.append(x[rng.choice(len(x), p=probs)])
        d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
    c = np.stack(centers)
    for _ in range(iters):
        assign = nearest_centroid(x, c)
        onehot = np.eye(k, dtype=x.dtype)[assign]
        counts = onehot.sum(0)
        sums = onehot.T @ x
        moved = counts > 0
        c[moved] = sums[moved] / counts[moved, None]
    return c.astype(np.float32)


def nearest_centroid(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid of each row ([N, D] x [K, D] -> [N])."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centers.T + (centers * centers).sum(1)[None, :]
    return d.argmin(1).astype(np.int32)
