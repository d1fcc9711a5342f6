"""Audio features: read (wav/flac/ogg), downmix, resample to 16 kHz, log-mel filterbank, audio tokens. The default
extractor, Whisper tiny.en's encoder, is in src/data/whisper.py; both are selected in src/data/extractors.py, which
also turns one file into audio tokens (`audio_tokens`).

The filterbank is computed for all frames at once in numpy (strided framing, one rFFT, one matrix product with the
mel filters). Consecutive frames are then stacked into audio tokens, the unit the cross-modal encoder masks and
predicts (the paper uses wav2vec 2.0 tokens; precomputed frame features in `.npz` are accepted too).
"""
from __future__ import annotations

import io
import math
from functools import lru_cache
from typing import Tuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from src.config import AudioFeatureConfig
from src.data.archive import read_bytes
from src.data.errors import FeatureError

NPZ_FEATURE_KEYS = ("features", "feat", "x")


def read_audio(path: str, cfg: AudioFeatureConfig) -> Tuple[np.ndarray, int]:
    """Mono float32 waveform at cfg.sample_rate and the number of seconds cut beyond cfg.max_seconds."""
    try:
        data = read_bytes(path)
    except OSError as e:
        raise FeatureError(f"cannot read audio: {e}") from None
    return decode_audio(data, cfg)


def decode_audio(data: bytes, cfg: AudioFeatureConfig) -> Tuple[np.ndarray, int]:
    """read_audio of the bytes of an audio file."""
    try:
        info = sf.info(io.BytesIO(data))
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, sf.LibsndfileError) as e:
        raise FeatureError(f"cannot read audio: {e}") from None
    if info.channels > cfg.max_channels:
        raise FeatureError(f"unsupported channel count {info.channels} (at most {cfg.max_channels})")
    if rate < cfg.min_sample_rate:
        raise FeatureError(f"unsupported sample rate {rate} Hz (at least {cfg.min_sample_rate} Hz)")
    _check_complete(data, info, len(wave))
    if len(wave) == 0:
        raise FeatureError("empty audio (0 samples)")
    if not np.isfinite(wave).all():
        raise FeatureError("audio contains NaN or Inf samples")
    mono = wave.mean(axis=1)
    if rate != cfg.sample_rate:
        g = math.gcd(rate, cfg.sample_rate)
        mono = resample_poly(mono, cfg.sample_rate // g, rate // g).astype(np.float32)
    return cut_to_max(mono, cfg)


def cut_to_max(wave: np.ndarray, cfg: AudioFeatureConfig) -> Tuple[np.ndarray, float]:
    """The first cfg.max_seconds of a float32 waveform at cfg.sample_rate, and the seconds cut off."""
    keep = int(cfg.max_seconds * cfg.sample_rate)
    return wave[:keep], max(0, len(wave) - keep) / cfg.sample_rate


def _check_complete(data: bytes, info, frames_read: int) -> None:
    """A WAV whose data chunk is shorter than its header says was cut off (an interrupted copy or download)."""
    if info.format != "WAV":
        return
    declared = _wav_declared_frames(data, info.channels, info.subtype)
    if declared is not None and declared > frames_read:
        raise FeatureError(f"truncated audio: header declares {declared} frames, file holds {frames_read}")


def _wav_declared_frames(data: bytes, channels: int, subtype: str):
    width = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8, "PCM_U8": 1}.get(subtype)
    if width is None:
        return None
    head = data[:1 << 16]
    pos = 12
    while pos + 8 <= len(head):
        tag, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if tag == b"data":
            return None if size in (0, 0xFFFFFFFF) else size // (width * channels)
        pos += 8 + size + (size & 1)
    return None


@lru_cache(maxsize=8)
def mel_filters(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular filters equally spaced on the HTK mel scale from 0 Hz to Nyquist."""
    mel_max = hz_to_mel(sample_rate / 2)
    centers_hz = mel_to_hz(np.linspace(0.0, mel_max, n_mels + 2))
    bins_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, center, upper = centers_hz[:-2], centers_hz[1:-1], centers_hz[2:]
    rising = (bins_hz[:, None] - lower) / (center - lower)
    falling = (upper - bins_hz[:, None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def log_mel_filterbank(wave: np.ndarray, cfg: AudioFeatureConfig) -> np.ndarray:
    """[frames, n_mels] log power of Hann-windowed frames through the mel filters."""
    win = int(round(cfg.win_ms * cfg.sample_rate / 1000))
    hop = int(round(cfg.hop_ms * cfg.sample_rate / 1000))
    if len(wave) < win:
        wave = np.pad(wave, (0, win - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, win)[::hop]
    spectrum = np.fft.rfft(frames * _hann(win), n=cfg.n_fft)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.log(np.maximum(power @ mel_filters(cfg.n_mels, cfg.n_fft, cfg.sample_rate), 1e-10)).astype(np.float32)


@lru_cache(maxsize=8)
def _hann(win: int) -> np.ndarray:
    """Periodic Hann window (the usual choice for spectral analysis)."""
    return np.hanning(win + 1)[:-1].astype(np.float32)


def frames_to_tokens(frames: np.ndarray, frames_per_token: int, normalize: bool) -> np.ndarray:
    """Stack k consecutive frames into one token: [frames, D] -> [frames // k, k * D] (a trailing remainder is
    dropped)."""
    if normalize:
        frames = (frames - frames.mean(0)) / (frames.std(0) + 1e-5)
    n = len(frames) // frames_per_token
    if n == 0:
        raise FeatureError(f"audio too short: {len(frames)} frames, one token needs {frames_per_token}")
    return np.ascontiguousarray(frames[:n * frames_per_token].reshape(n, -1), dtype=np.float32)


def load_npz_frames(path: str) -> np.ndarray:
    """Precomputed frame features (wav2vec 2.0 style): `features` [T, D], finite."""
    try:
        with np.load(path) as z:
            key = next((k for k in NPZ_FEATURE_KEYS if k in z.files), None)
            if key is None:
                raise FeatureError(f"no audio features in .npz (expected one of {NPZ_FEATURE_KEYS}, found {z.files})")
            feats = np.asarray(z[key], dtype=np.float32)
    except (OSError, ValueError) as e:
        raise FeatureError(f"cannot read .npz: {e}") from None
    if feats.ndim != 2 or len(feats) == 0:
        raise FeatureError(f"audio features must have shape [T>0, D], got {list(feats.shape)}")
    if not np.isfinite(feats).all():
        raise FeatureError("audio features contain NaN or Inf")
    return feats
