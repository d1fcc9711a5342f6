"""Feature extractors by name: what `prepare.image.extractor` and `prepare.audio.extractor` select.

Extraction runs in two steps so that the pretrained networks see whole batches: `decode_*` (file -> pixels or
waveform; cheap, runs in worker processes) and the extractor's batch call (pixels -> regions, waveforms -> audio
tokens; runs once per batch in the main process). Precomputed `.npz` features skip both.

| image extractor      | features                                  | MRC target                               |
|----------------------|-------------------------------------------|------------------------------------------|
| `efficientnet_lite0` | 7x7 grid of the 1280-channel ImageNet head | the cell's ImageNet class distribution   |
| `grid`               | raw RGB pixels of grid x grid cells        | k-means cluster of the pixels            |

| audio extractor      | features                                   |
|----------------------|--------------------------------------------|
| `whisper_tiny_en`    | Whisper tiny.en encoder frames (384-d, 20 ms), averaged `frames_per_token` at a time |
| `logmel`             | log-mel frames (n_mels, hop_ms), stacked `frames_per_token` at a time |
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from src.config import AudioFeatureConfig, ConfigError, ImageFeatureConfig
from src.data.audio import cut_to_max, decode_audio, frames_to_tokens, load_npz_frames, log_mel_filterbank, read_audio
from src.data.errors import FeatureError
from src.data.image import (Regions, decode_image, grid_boxes, grid_regions, load_npz_regions, read_image,
                            thumbnail)

IMAGE_EXTRACTORS = ("efficientnet_lite0", "grid")
AUDIO_EXTRACTORS = ("whisper_tiny_en", "logmel")
WHISPER_FRAME_SECONDS = 0.02
IMAGE_BATCH = 16


def check_extractors(image: ImageFeatureConfig, audio: AudioFeatureConfig) -> None:
    """A ConfigError for an extractor name that does not exist."""
    if image.extractor not in IMAGE_EXTRACTORS:
        raise ConfigError(f"prepare.image.extractor: unknown extractor '{image.extractor}' "
                          f"(known: {', '.join(IMAGE_EXTRACTORS)})")
    if audio.extractor not in AUDIO_EXTRACTORS:
        raise ConfigError(f"prepare.audio.extractor: unknown extractor '{audio.extractor}' "
                          f"(known: {', '.join(AUDIO_EXTRACTORS)})")
    if audio.whisper_window not in ("clip", "padded"):
        raise ConfigError(f"prepare.audio.whisper_window must be 'clip' or 'padded', got '{audio.whisper_window}'")


# ----------------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------------
def image_regions_batch(images: List[np.ndarray], cfg: ImageFeatureConfig) -> List[Regions]:
    """RGB uint8 images -> their regions (thumbnails are added by the caller, from the original images)."""
    if cfg.extractor == "grid":
        return [grid_regions(im, cfg) for im in images]
    from src.data.efficientnet import GRID, shared_extractor
    boxes, out = grid_boxes(GRID), []
    for start in range(0, len(images), IMAGE_BATCH):  # activations of a larger batch outgrow the caches
        features, probs = shared_extractor()(images[start:start + IMAGE_BATCH])
        out += [Regions(f, boxes, class_probs=p) for f, p in zip(features, probs)]
    return out


def image_feature_dim(cfg: ImageFeatureConfig) -> int:
    if cfg.extractor == "grid":
        return 3 * cfg.patch_pixels * cfg.patch_pixels
    from src.data.efficientnet import FEATURE_DIM
    return FEATURE_DIM


def image_extractor_info(cfg: ImageFeatureConfig) -> dict:
    """What meta.json records about the image extractor."""
    if cfg.extractor == "grid":
        return {"name": "grid", "grid": cfg.grid, "patch_pixels": cfg.patch_pixels}
    from src.data.efficientnet import GRID, INPUT_SIZE, MEAN, NUM_CLASSES, STD, weights_file
    w = weights_file()
    return {"name": cfg.extractor, "package": w.package, "version": w.version, "input_size": INPUT_SIZE,
            "grid": GRID, "normalisation": [MEAN, STD], "classes": NUM_CLASSES, "runtime": "onnxruntime"}


# ----------------------------------------------------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------------------------------------------------
def audio_tokens_batch(waves: List[np.ndarray], cfg: AudioFeatureConfig) -> List[np.ndarray]:
    """16 kHz mono waveforms -> audio tokens [T_i, D] float32."""
    if cfg.extractor == "logmel":
        return [frames_to_tokens(log_mel_filterbank(w, cfg), cfg.frames_per_token, cfg.normalize) for w in waves]
    frames = whisper_extractor(cfg.whisper_window)(waves)
    return [pool_frames(f, cfg.frames_per_token) for f in frames]


def pool_frames(frames: np.ndarray, k: int) -> np.ndarray:
    """[T, D] -> [ceil(T / k), D]: means of k consecutive frames (the last token averages what is left)."""
    if len(frames) == 0:
        raise FeatureError("audio too short: the encoder gave no frame")
    if k <= 1:
        return np.ascontiguousarray(frames, np.float32)
    n = -(-len(frames) // k)
    padded = np.concatenate([frames, np.repeat(frames[-1:], n * k - len(frames), 0)])
    return padded.reshape(n, k, -1).mean(1).astype(np.float32)


@lru_cache(maxsize=2)
def whisper_extractor(window: str):
    """One Whisper encoder per process (its graphs compile once per length bucket)."""
    from src.data.whisper import WhisperFeatureExtractor
    return WhisperFeatureExtractor(mode=window)


def audio_feature_dim(cfg: AudioFeatureConfig) -> int:
    if cfg.extractor == "logmel":
        return cfg.n_mels * cfg.frames_per_token
    return 384


def audio_token_seconds(cfg: AudioFeatureConfig) -> float:
    frame = cfg.hop_ms / 1000.0 if cfg.extractor == "logmel" else WHISPER_FRAME_SECONDS
    return frame * cfg.frames_per_token


def audio_extractor_info(cfg: AudioFeatureConfig) -> dict:
    if cfg.extractor == "logmel":
        return {"name": "logmel", "n_mels": cfg.n_mels, "hop_ms": cfg.hop_ms, "frames_per_token": cfg.frames_per_token}
    from src.data.whisper import whisper_model_dir
    w = whisper_model_dir()
    return {"name": cfg.extractor, "package": w.package, "version": w.version, "window": cfg.whisper_window,
            "frame_seconds": WHISPER_FRAME_SECONDS, "frames_per_token": cfg.frames_per_token, "pooling": "mean"}


# ----------------------------------------------------------------------------------------------------------------------
# Inputs at inference: files, the bytes of a file, or decoded arrays, many at once
# ----------------------------------------------------------------------------------------------------------------------
def input_name(item, i: int) -> str:
    """How an error names an input: its path, else its position."""
    return str(item) if isinstance(item, (str, Path)) else f"input {i} ({type(item).__name__})"


def image_regions_files(items: Sequence, cfg: ImageFeatureConfig) -> list:
    """The regions of many images, the network over whole batches; each item is an image file (or `.npz`
    regions), its bytes, or an RGB uint8 array [H, W, 3]. An item that cannot be read or decoded gives its
    FeatureError (naming it) in its place."""
    out, decoded = [None] * len(items), []
    for i, item in enumerate(items):
        try:
            if isinstance(item, (str, Path)) and str(item).endswith(".npz"):
                out[i] = load_npz_regions(str(item), cfg)
            else:
                decoded.append((i, _pixels(item)))
        except FeatureError as e:
            out[i] = FeatureError(f"{input_name(item, i)}: {e}")
    for start in range(0, len(decoded), IMAGE_BATCH):
        chunk = decoded[start:start + IMAGE_BATCH]
        for (i, image), regions in zip(chunk, image_regions_batch([im for _, im in chunk], cfg)):
            regions.thumb = thumbnail(image, cfg.thumb_size)
            out[i] = regions
    return out


def _pixels(item) -> np.ndarray:
    if isinstance(item, (str, Path)):
        return read_image(str(item))
    if isinstance(item, (bytes, bytearray)):
        return decode_image(bytes(item))
    image = np.asarray(item)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 2:
        raise FeatureError(f"an image array must be RGB uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    return image


def audio_tokens_files(items: Sequence, cfg: AudioFeatureConfig) -> list:
    """(tokens, seconds cut) of many recordings, or a FeatureError naming the item in its place; each item is an
    audio file (or `.npz` frames), its bytes, or a mono float32 waveform at cfg.sample_rate."""
    out = []
    for i, item in enumerate(items):
        try:
            out.append(audio_tokens(item, cfg))
        except FeatureError as e:
            out.append(FeatureError(f"{input_name(item, i)}: {e}"))
    return out


def audio_tokens(item, cfg: AudioFeatureConfig) -> Tuple[np.ndarray, float]:
    """Audio tokens of one recording ([T, D] float32) and the seconds cut beyond cfg.max_seconds."""
    if isinstance(item, (str, Path)) and str(item).endswith(".npz"):
        return load_npz_frames(str(item)), 0.0
    if isinstance(item, (str, Path)):
        wave, cut = read_audio(str(item), cfg)
    elif isinstance(item, (bytes, bytearray)):
        wave, cut = decode_audio(bytes(item), cfg)
    else:
        wave, cut = waveform(item, cfg)
    return audio_tokens_batch([wave], cfg)[0], cut


def waveform(item, cfg: AudioFeatureConfig) -> Tuple[np.ndarray, float]:
    """A waveform array given as input, checked and cut to cfg.max_seconds."""
    wave = np.asarray(item)
    if wave.ndim != 1 or wave.dtype.kind != "f" or len(wave) == 0:
        raise FeatureError(f"a waveform must be mono float [samples] at {cfg.sample_rate} Hz, got {wave.dtype} "
                           f"{list(wave.shape)}")
    if not np.isfinite(wave).all():
        raise FeatureError("audio contains NaN or Inf samples")
    return cut_to_max(wave.astype(np.float32), cfg)


# ----------------------------------------------------------------------------------------------------------------------
# MRC targets
# ----------------------------------------------------------------------------------------------------------------------
def top_k_distribution(probs: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """[N, C] class scores -> (ids [N, k] int32, probabilities [N, k] float32 summing to 1): the k most likely
    classes of each row, renormalised. Scores are rounded to float16 first, as stored in `.npz` files, so that
    features extracted to files and features extracted during preparation give the same targets."""
    p = np.maximum(np.asarray(probs, np.float16).astype(np.float32), 0.0)
    k = min(k, p.shape[1])
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k].astype(np.int32)
    top = np.take_along_axis(p, ids, 1)
    total = top.sum(1, keepdims=True)
    top = np.where(total > 0, top / np.maximum(total, 1e-12), 1.0 / k)
    return ids, top.astype(np.float32)
