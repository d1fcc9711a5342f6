import dataclasses
import json
import os

import numpy as np
import pytest
import soundfile as sf

from src.data.extractors import audio_tokens
from src.data.image import nearest_centroid
from src.data.prepare import PrepareError, main, prepare
from src.data.records import SCHEMA, DatasetError, open_prepared
from src.data.sources import Sample, read_source
from src.data.tokenizer import Tokenizer
from tests.conftest import make_manifest, tiny_config, write_tone
from tests.stored import decode_row, image_regions

QUIET = dict(log=lambda *a: None)


def read_split(data, split):
    import mindspore.dataset as ds
    rows = ds.MindDataset(data.files(split), columns_list=list(SCHEMA), shuffle=False)
    return list(rows.create_dict_iterator(output_numpy=True, num_epochs=1))


def test_round_trip_is_exact(prepared, tiny_cfg):
    data = open_prepared(prepared)
    samples = [s for s in read_source(data.meta["source"]["path"]) if isinstance(s, Sample)]
    tok = Tokenizer(data.vocab_path)
    codebook = np.load(prepared / "codebook.npy")
    by_id = {s.id: s for s in samples}
    seen = 0
    for split, count in (("train", 32), ("val", 8)):
        rows = read_split(data, split)
        assert len(rows) == data.count(split) == count
        assert sorted(int(r["index"]) for r in rows) == list(range(count))
        for row in rows:
            s = by_id[str(row["id"])]
            got = decode_row(row, data.image_dim, data.audio_dim, data.mrc_top_k)
            assert str(row["text"]) == s.text and s.split == split
            assert got["text_ids"].tolist() == tok.encode(s.text)
            assert [data.labels[i] for i in got["labels"]] == s.labels
            if s.image:
                ref = image_regions(s.image, tiny_cfg.prepare.image)
                # features are stored as float16 (raw: the pipeline standardises them)
                np.testing.assert_array_equal(got["image_feat"], ref.features.astype(np.float16))
                np.testing.assert_array_equal(got["image_boxes"], ref.boxes)
                np.testing.assert_array_equal(got["mrc_ids"][:, 0], nearest_centroid(ref.features, codebook))
                assert (got["mrc_probs"] == 1.0).all()
                assert bytes(row["image_thumb"]) == ref.thumb.tobytes()
            else:
                assert got["image_feat"].shape == (0, data.image_dim)
            if s.audio:
                want = audio_tokens(s.audio, tiny_cfg.prepare.audio)[0].astype(np.float16)
                np.testing.assert_array_equal(got["audio_feat"], want)
            else:
                assert got["audio_feat"].shape == (0, data.audio_dim)
            seen += 1
    assert seen == 40


def test_meta_describes_the_data(prepared):
    meta = open_prepared(prepared).meta
    assert meta["counts"]["written"] == 40 and meta["counts"]["skipped"] == 0 and meta["skipped"] == []
    assert meta["image"]["feature_dim"] == 3 * 4 * 4 and meta["audio"]["feature_dim"] == 16 * 2
    assert meta["image"]["mrc"] == {"source": "kmeans", "num_classes": 8, "codebook": "codebook.npy", "top_k": 1}
    assert meta["image"]["extractor"]["name"] == "grid" and meta["audio"]["extractor"]["name"] == "logmel"
    assert meta["audio"]["token_seconds"] == 0.02 and meta["feature_storage"] == "float16"
    # standardisation statistics of the training split's features, one per channel
    stats = meta["image"]["standardize"]
    assert len(stats["mean"]) == len(stats["std"]) == 48 and stats["rows"] == 27 * 4 and min(stats["std"]) > 0
    assert len(meta["audio"]["standardize"]["mean"]) == 32
    assert meta["splits"]["train"]["modalities"] == {"text": 32, "image": 27, "audio": 26}
    assert len(meta["splits"]["train"]["files"]) == 2  # prepare.shards
    assert meta["text"]["vocab_size"] == 30522 and meta["labels"] == ["apple", "blue", "red"]
    assert meta["prepare"]["image"]["grid"] == 2


def test_rerun_reuses_and_changed_input_rebuilds(tmp_path, tiny_cfg):
    manifest = make_manifest(tmp_path, n=12, val=2)
    out = tmp_path / "out"
    first = prepare(str(manifest), str(out), tiny_cfg.prepare, **QUIET)
    stamp = (out / "meta.json").stat().st_mtime_ns
    logs = []
    again = prepare(str(manifest), str(out), tiny_cfg.prepare, log=logs.append)
    assert again["fingerprint"] == first["fingerprint"] and "reusing" in logs[-1]
    assert (out / "meta.json").stat().st_mtime_ns == stamp
    write_tone(tmp_path / "wav" / "0.wav", 999)  # an input file changed
    logs.clear()
    rebuilt = prepare(str(manifest), str(out), tiny_cfg.prepare, log=logs.append)
    assert rebuilt["fingerprint"] != first["fingerprint"] and any("rebuilding" in line for line in logs)


def test_interrupted_and_damaged_outputs_are_rebuilt_never_read(tmp_path, tiny_cfg):
    manifest = make_manifest(tmp_path, n=12, val=2)
    out = tmp_path / "out"
    stale = tmp_path / ".out.partial-4242"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "data.mindrecord0").write_bytes(b"half")
    logs = []
    prepare(str(manifest), str(out), tiny_cfg.prepare, log=logs.append)
    assert not stale.exists() and any("interrupted" in line for line in logs)
    shard = out / "train" / "data.mindrecord0"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    with pytest.raises(DatasetError, match="missing or damaged"):
        open_prepared(out)
    logs.clear()
    prepare(str(manifest), str(out), tiny_cfg.prepare, log=logs.append)
    assert any("rebuilding" in line for line in logs)
    assert open_prepared(out).count("train") == 10
    meta = json.loads((out / "meta.json").read_text())
    meta["complete"] = False
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="incomplete"):
        open_prepared(out)


def test_refuses_to_overwrite_a_foreign_directory(tmp_path, tiny_cfg):
    manifest = make_manifest(tmp_path, n=4, val=0)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(PrepareError, match="not a prepared dataset; refusing"):
        prepare(str(manifest), str(tmp_path / "mine"), tiny_cfg.prepare, **QUIET)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_like_reuses_tokenizer_settings_codebook_and_labels(prepared, tmp_path):
    other = tiny_config("prepare.image.grid=3", "prepare.audio.n_mels=20")  # ignored: --like wins
    manifest = make_manifest(tmp_path, n=6, val=0)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "split"}) + "\n" for r in rows))
    out = tmp_path / "eval"
    meta = prepare(str(manifest), str(out), other.prepare, split="test", like=str(prepared), **QUIET)
    ref = open_prepared(prepared).meta
    assert meta["image"] == ref["image"] and meta["audio"] == ref["audio"] and meta["labels"] == ref["labels"]
    assert (out / "vocab.txt").read_bytes() == (prepared / "vocab.txt").read_bytes()
    np.testing.assert_array_equal(np.load(out / "codebook.npy"), np.load(prepared / "codebook.npy"))
    assert meta["splits"]["test"]["count"] == 6 and meta["like"] == str(prepared.resolve())
    rows[0]["labels"] = ["unheard-of"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(PrepareError, match="labels \\['unheard-of'\\] are not in the reference label set"):
        prepare(str(manifest), str(tmp_path / "eval2"), other.prepare, like=str(prepared), **QUIET)


def test_parallel_extraction_gives_the_same_records(tmp_path):
    manifest = make_manifest(tmp_path, n=20, val=0)
    metas = []
    for workers in (1, 2):
        cfg = tiny_config(f"prepare.workers={workers}")
        prepare(str(manifest), str(tmp_path / f"w{workers}"), cfg.prepare, **QUIET)
        metas.append(open_prepared(tmp_path / f"w{workers}"))
    a, b = (read_split(m, "train") for m in metas)
    assert len(a) == len(b) == 20
    for ra, rb in zip(a, b):
        da, db = (decode_row(r, metas[0].image_dim, metas[0].audio_dim) for r in (ra, rb))
        for key in da:
            np.testing.assert_array_equal(da[key], db[key])
        for key in ("id", "text", "image_thumb"):
            assert ra[key].tobytes() == rb[key].tobytes()


def test_detector_scores_become_top_k_mrc_targets(tmp_path, tiny_cfg):
    rows = []
    for i in range(6):
        scores = np.full((3, 5), 0.02, np.float32)
        scores[np.arange(3), (np.arange(3) + i) % 5] = 0.6
        scores[np.arange(3), (np.arange(3) + i + 1) % 5] = 0.34
        np.savez(tmp_path / f"{i}.npz", features=np.full((3, 8), i, np.float32),
                 norm_bb=np.tile([0, 0, 1, 1], (3, 1)), cls_prob=scores)
        rows.append({"id": str(i), "image": f"{i}.npz", "text": "x"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = dataclasses.replace(tiny_cfg.prepare, image=dataclasses.replace(tiny_cfg.prepare.image, mrc_top_k=2))
    meta = prepare(str(tmp_path / "m.jsonl"), str(tmp_path / "out"), cfg, **QUIET)
    assert meta["image"]["mrc"] == {"source": "scores", "num_classes": 5, "top_k": 2}
    assert meta["image"]["feature_dim"] == 8 and meta["image"]["extractor"] == {"name": "precomputed"}
    data = open_prepared(tmp_path / "out")
    for row in read_split(data, "train"):
        i = int(row["id"])
        got = decode_row(row, 8, data.audio_dim, 2)
        assert got["mrc_ids"].tolist() == [[(k + i) % 5, (k + i + 1) % 5] for k in range(3)]
        # the two top classes, renormalised (float16-rounded scores, as stored in .npz files)
        p = np.float32(np.float16(0.6)) / (np.float32(np.float16(0.6)) + np.float32(np.float16(0.34)))
        np.testing.assert_allclose(got["mrc_probs"], [[p, 1 - p]] * 3, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: every case stops with the line, the file and the problem (nothing written), or is skipped and reported.
# ---------------------------------------------------------------------------------------------------------------------
def _break(tmp_path, case):
    """A 6-sample manifest whose 4th line (sample s003) is bad in the way `case` names."""
    manifest = make_manifest(tmp_path, n=6, val=0, partial=False)
    lines = manifest.read_text().splitlines()
    row = json.loads(lines[3])
    if case == "corrupt image":
        (tmp_path / "img" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    elif case == "empty audio":
        sf.write(str(tmp_path / "wav" / "3.wav"), np.zeros(0, np.float32), 16000)
    elif case == "truncated audio":
        data = (tmp_path / "wav" / "3.wav").read_bytes()
        (tmp_path / "wav" / "3.wav").write_bytes(data[:len(data) // 2])
    elif case == "channels":
        sf.write(str(tmp_path / "wav" / "3.wav"), np.zeros((800, 5), np.float32), 16000)
    elif case == "sample rate":
        sf.write(str(tmp_path / "wav" / "3.wav"), np.zeros(800, np.float32), 2000)
    elif case == "empty caption":
        row["text"] = " "
    elif case == "missing file":
        os.remove(tmp_path / "img" / "3.png")
    elif case == "duplicate id":
        row["id"] = "s001"
    elif case == "nan npz":
        np.savez(tmp_path / "3.npz", features=np.full((4, 48), np.nan, np.float32), norm_bb=np.zeros((4, 4)))
        row["image"] = "3.npz"
    elif case == "wrong-shaped npz":
        np.savez(tmp_path / "3.npz", features=np.ones((4, 10), np.float32), norm_bb=np.zeros((4, 4)))
        row["image"] = "3.npz"
    lines[3] = "{not json" if case == "invalid json" else json.dumps(row)
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


BAD = {
    "corrupt image": ("img/3.png", "cannot decode image"),
    "empty audio": ("wav/3.wav", "empty audio"),
    "truncated audio": ("wav/3.wav", "truncated audio"),
    "channels": ("wav/3.wav", "unsupported channel count 5"),
    "sample rate": ("wav/3.wav", "unsupported sample rate 2000 Hz"),
    "empty caption": (None, "empty caption"),
    "missing file": ("img/3.png", "file not found"),
    "duplicate id": (None, "duplicate id"),
    "invalid json": (None, "invalid JSON"),
    "nan npz": ("3.npz", "'features' contains NaN or Inf"),
    "wrong-shaped npz": ("3.npz", "region features have dim 10, expected 48"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_naming_line_file_and_problem(tmp_path, tiny_cfg, case):
    manifest = _break(tmp_path, case)
    file, problem = BAD[case]
    with pytest.raises(PrepareError) as err:
        prepare(str(manifest), str(tmp_path / "out"), tiny_cfg.prepare, **QUIET)
    msg = str(err.value)
    assert f"{manifest}:4" in msg and problem in msg and "nothing was written" in msg
    if file:
        assert msg.count(str((tmp_path / file).resolve())) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_skipped_and_reported(tmp_path, tiny_cfg, case):
    manifest = _break(tmp_path, case)
    logs = []
    meta = prepare(str(manifest), str(tmp_path / "out"), tiny_cfg.prepare, on_error="skip", log=logs.append)
    assert meta["counts"]["written"] == 5 and meta["counts"]["skipped"] == 1
    (skipped,) = meta["skipped"]
    assert skipped["where"] == f"{manifest}:4" and BAD[case][1] in skipped["reason"]
    assert any(line.startswith("skipping") for line in logs) and "skipped 1" in logs[-1]
    written = {str(r["id"]) for r in read_split(open_prepared(tmp_path / "out"), "train")}
    assert "s003" not in written or case == "duplicate id"


def test_cli_reports_errors_and_skips(tmp_path, capsys):
    manifest = _break(tmp_path, "corrupt image")
    tiny = "config/pretrain_tiny.yaml"
    assert main([str(manifest), str(tmp_path / "out"), "--config", tiny]) == 2
    assert "cannot decode image" in capsys.readouterr().err
    assert main([str(manifest), str(tmp_path / "out"), "--config", tiny, "--on-error", "skip"]) == 0
    assert "1 samples skipped" in capsys.readouterr().out
    assert main([str(manifest), str(tmp_path / "o2"), "--config", tiny, "--set", "prepare.shardz=2"]) == 2
    assert "unknown key 'shardz'" in capsys.readouterr().err


def test_an_input_shared_by_samples_goes_through_the_network_once(tmp_path, tiny_cfg, monkeypatch):
    """Identical recordings (a question asked about many pictures) and one image file (a picture with several
    questions) are computed once, whatever their file names; every sample still gets its features."""
    import src.data.prepare as prep
    write_tone(tmp_path / "a.wav", 300)
    (tmp_path / "b.wav").write_bytes((tmp_path / "a.wav").read_bytes())
    write_tone(tmp_path / "c.wav", 500)
    make_manifest(tmp_path, n=2, val=0, partial=False)
    image = str((tmp_path / "img" / "0.png").resolve())
    samples = [Sample(id=str(i), where="test", image=image, audio=str(tmp_path / f"{w}.wav"))
               for i, w in enumerate("abcab")]
    calls = []

    def fake_tokens(waves, cfg):
        calls.append(len(waves))
        return [np.full((3, 4), float(len(w)), np.float32) for w in waves]
    monkeypatch.setattr(prep, "audio_tokens_batch", fake_tokens)
    cfg = dataclasses.replace(tiny_cfg.prepare, audio=dataclasses.replace(tiny_cfg.prepare.audio, extractor="fake"))
    out = list(prep.extract_all(samples, cfg))
    assert calls == [2]  # a.wav and b.wav are one recording
    assert all(r[1] is not None and r[0] is not None for r in out)
    np.testing.assert_array_equal(out[0][1], out[1][1])
