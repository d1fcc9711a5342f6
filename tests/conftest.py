"""Small generated fixtures in the real formats: PNG/JPEG images, WAV/FLAC audio, manifests, a prepared dataset."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from src.config import load_config
import src.tasks  # noqa: F401  (registers every task: their config sections are known to load_config)

ROOT = Path(__file__).resolve().parents[1]
# Tests run many recipes per process and several processes at once: the compile cache (src/compile_cache.py) stays off
# but in tests/test_compile_cache.py, which turns it on for its own subprocesses.
os.environ["OPT_COMPILE_CACHE"] = "off"
TINY = ROOT / "config" / "pretrain_tiny.yaml"
WORDS = ["red", "apple", "blue", "sky", "green", "tree", "small", "dog", "big", "cat", "happy", "face"]


# fixtures that train a run: a test that needs one is end-to-end (marked e2e here, out of the unit run)
TRAINING_FIXTURES = {"coded", "dir_pretrained", "pretrained_run", "vqa_run"}


def pytest_collection_modifyitems(items):
    """A test that needs a trained run is marked e2e; the end-to-end tests (a minute or more each) run first: in
    parallel workers, none of them is left to start last and run alone while the other workers idle."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def tiny_config(*overrides):
    return load_config(str(TINY), list(overrides))


def data_dims(vocab_size, image_dim, audio_dim, mrc_classes, audio_tokens, text_len=40, regions=36, codebook_size=0):
    """The DataDims of a made-up prepared set with text, image and audio."""
    from src.model.opt import DataDims
    return DataDims(vocab_size, {"image": image_dim, "audio": audio_dim}, mrc_classes,
                    {"text": text_len, "image": regions, "audio": audio_tokens}, codebook_size)


def write_image(path: Path, seed: int, size=(40, 48)) -> None:
    rng = np.random.default_rng(seed)
    img = np.full((*size, 3), rng.integers(0, 255, 3), np.uint8)
    img[: size[0] // 2] = rng.integers(0, 255, 3)  # a two-tone image, so the regions differ
    cv2.imwrite(str(path), img)


def write_tone(path: Path, freq: float, seconds: float = 0.5, rate: int = 16000, channels: int = 1) -> None:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    sf.write(str(path), np.repeat(wave[:, None], channels, 1) if channels > 1 else wave, rate)


def make_manifest(root: Path, n: int = 24, val: int = 4, name: str = "manifest.jsonl", partial: bool = True) -> Path:
    """n tri-modal samples (every 5th without audio, every 7th without image when `partial`), the last `val` in val."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        row = {"id": f"s{i:03d}", "text": f"{WORDS[i % 12]} {WORDS[(i * 5 + 1) % 12]} number {i}", "lang": "en",
               "labels": [WORDS[i % 3]], "split": "val" if i >= n - val else "train"}
        if not (partial and i % 7 == 3):
            write_image(root / "img" / f"{i}.png", i)
            row["image"] = f"img/{i}.png"
        if not (partial and i % 5 == 2):
            write_tone(root / "wav" / f"{i}.wav", 200 + 40 * i, rate=(16000, 22050, 8000)[i % 3])
            row["audio"] = f"wav/{i}.wav"
        rows.append(row)
    path = root / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_cfg():
    return tiny_config()


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, tiny_cfg):
    """A prepared tiny dataset: 40 samples (32 train, 8 val), some without image or audio."""
    from src.data.prepare import prepare
    root = tmp_path_factory.mktemp("prepared")
    manifest = make_manifest(root, n=40, val=8)
    prepare(str(manifest), str(root / "out"), tiny_cfg.prepare, log=lambda *a: None)
    return root / "out"


@pytest.fixture(scope="session")
def prepared_complete(tmp_path_factory, tiny_cfg):
    """A prepared tiny dataset where every sample has text, image and audio (40 samples: 32 train, 8 val)."""
    from src.data.prepare import prepare
    root = tmp_path_factory.mktemp("complete")
    manifest = make_manifest(root, n=40, val=8, partial=False)
    prepare(str(manifest), str(root / "out"), tiny_cfg.prepare, log=lambda *a: None)
    return root / "out"


@pytest.fixture(scope="session")
def coded(prepared, tmp_path_factory):
    """A copy of the tiny prepared set (some samples without an image), a 2-step dVAE run, its codes extracted."""
    import shutil
    import train as train_script
    from src.tasks.dvae_codes import main as codes_main
    root = tmp_path_factory.mktemp("coded")
    shutil.copytree(prepared, root / "prepared")
    run = root / "dvae"
    assert train_script.main(["--config", str(ROOT / "config" / "dvae_tiny.yaml"), "--set",
                              f"data.path={root / 'prepared'}", f"train.output_dir={run}", "train.max_steps=2"]) == 0
    assert codes_main(["--dvae", str(run)]) == 0
    return root / "prepared", run


@pytest.fixture(scope="session")
def dir_pretrained(coded, tmp_path_factory):
    """A 6-step tiny pre-training with DIR on the `coded` set (its run directory)."""
    import train as train_script
    run = tmp_path_factory.mktemp("dir") / "run"
    sets = [f"data.path={coded[0]}", "loss.dir=1.0", "dvae.codebook_size=16", "train.max_steps=6", "train.lr=0.003",
            "train.warmup_steps=0", f"train.output_dir={run}"]
    assert train_script.main(["--config", str(TINY), "--set", *sets]) == 0
    return run


@pytest.fixture(scope="session")
def pretrained_run(prepared, tmp_path_factory):
    """A 2-step tiny pre-training on `prepared` (its run directory): what fine-tuning starts from."""
    import train as train_script
    run = tmp_path_factory.mktemp("pretrained") / "run"
    assert train_script.main(["--config", str(TINY), "--set", f"data.path={prepared}", "train.max_steps=2",
                              f"train.output_dir={run}"]) == 0
    return run
