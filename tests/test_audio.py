import numpy as np
import pytest
import soundfile as sf
from scipy.signal import get_window

from src.config import AudioFeatureConfig
from src.data.audio import frames_to_tokens, log_mel_filterbank, mel_filters, read_audio
from src.data.extractors import audio_tokens
from src.data.errors import FeatureError
from tests.conftest import write_tone

CFG = AudioFeatureConfig(extractor="logmel", n_mels=40, frames_per_token=4)


def reference_filterbank(wave, rate=16000, win=400, hop=160, n_fft=512, n_mels=40):
    """An independent, loop-by-loop log-mel filterbank (HTK mel scale, scipy's periodic Hann window)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)
    edges = [hz(m) for m in np.linspace(0, mel(rate / 2), n_mels + 2)]
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    filters = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(freqs):
            if lo < f <= mid:
                filters[m, k] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                filters[m, k] = (hi - f) / (hi - mid)
    window = get_window("hann", win, fftbins=True)
    out = []
    for start in range(0, len(wave) - win + 1, hop):
        power = np.abs(np.fft.rfft(wave[start:start + win] * window, n_fft)) ** 2
        out.append(np.log(np.maximum(filters @ power, 1e-10)))
    return np.array(out)


def test_filterbank_matches_independent_computation():
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    ours = log_mel_filterbank(wave, CFG)
    ref = reference_filterbank(wave.astype(np.float64))
    assert ours.shape == ref.shape == (98, 40)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_tone_peaks_in_its_mel_band():
    t = np.arange(16000) / 16000
    for freq in (300.0, 1000.0, 4000.0):
        fb = log_mel_filterbank(np.sin(2 * np.pi * freq * t).astype(np.float32), CFG)
        centre_bins = mel_filters(40, 512, 16000).argmax(0)  # the FFT bin at the top of each triangle
        band = fb.mean(0).argmax()
        centre_hz = centre_bins[band] * 16000 / 512
        assert abs(centre_hz - freq) / freq < 0.15, (freq, centre_hz)


def test_read_resamples_and_downmixes(tmp_path):
    write_tone(tmp_path / "a.wav", 440, seconds=1.0, rate=22050, channels=2)
    wave, cut = read_audio(str(tmp_path / "a.wav"), CFG)
    assert wave.dtype == np.float32 and len(wave) == 16000 and cut == 0
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(spectrum.argmax() * 16000 / len(wave) - 440) < 2  # the tone survives resampling
    for name, rate in (("b.flac", 8000), ("c.ogg", 44100)):
        write_tone(tmp_path / name, 440, seconds=1.0, rate=rate)
        wave = read_audio(str(tmp_path / name), CFG)[0]
        assert len(wave) == 16000 and abs(np.abs(np.fft.rfft(wave)).argmax() - 440) < 2


def test_tokens_and_cut(tmp_path):
    write_tone(tmp_path / "long.wav", 300, seconds=3.0)
    cfg = AudioFeatureConfig(extractor="logmel", n_mels=40, frames_per_token=4, max_seconds=2.0)
    tokens, cut = audio_tokens(str(tmp_path / "long.wav"), cfg)
    assert cut == pytest.approx(1.0)
    assert tokens.shape == (((2 * 16000 - 400) // 160 + 1) // 4, 160) == (49, 160)
    frames = np.arange(30, dtype=np.float32).reshape(10, 3)
    stacked = frames_to_tokens(frames, 4, normalize=False)
    np.testing.assert_array_equal(stacked, frames[:8].reshape(2, 12))


@pytest.mark.parametrize("case", ["empty", "truncated", "channels", "rate", "corrupt", "nan"])
def test_bad_audio(tmp_path, case):
    path = tmp_path / "x.wav"
    if case == "empty":
        sf.write(str(path), np.zeros(0, np.float32), 16000)
        msg = "empty audio"
    elif case == "truncated":
        write_tone(path, 300, seconds=1.0)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        msg = "truncated audio: header declares 16000 frames"
    elif case == "channels":
        sf.write(str(path), np.zeros((1600, 6), np.float32), 16000)
        msg = "unsupported channel count 6"
    elif case == "rate":
        sf.write(str(path), np.zeros(1600, np.float32), 4000)
        msg = "unsupported sample rate 4000 Hz"
    elif case == "corrupt":
        path.write_bytes(b"RIFF....WAVEnot really audio")
        msg = "cannot read audio"
    else:
        sf.write(str(path), np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
        msg = "NaN or Inf"
    with pytest.raises(FeatureError, match=msg):
        audio_tokens(str(path), CFG)


def test_npz_frames(tmp_path):
    np.savez(tmp_path / "ok.npz", features=np.ones((7, 32), np.float32))
    tokens, cut = audio_tokens(str(tmp_path / "ok.npz"), CFG)
    assert tokens.shape == (7, 32) and cut == 0
    np.savez(tmp_path / "bad.npz", features=np.ones(7, np.float32))
    with pytest.raises(FeatureError, match=r"shape \[T>0, D\], got \[7\]"):
        audio_tokens(str(tmp_path / "bad.npz"), CFG)
    np.savez(tmp_path / "inf.npz", features=np.full((3, 4), np.inf, np.float32))
    with pytest.raises(FeatureError, match="NaN or Inf"):
        audio_tokens(str(tmp_path / "inf.npz"), CFG)
