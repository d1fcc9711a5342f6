"""The publishers' formats: Karpathy split JSON, AIC-ICC, CSV/TSV and webdataset shards, read and prepared."""
import json
import tarfile

import pytest

from src.data import archive, captions, webdataset  # noqa: F401 (captions, webdataset register their formats)
from src.data.sources import Problem, Sample, read_source
from src.data.webdataset import expand_braces, shard_paths
from tests.formats import describe, make_aic, make_karpathy, make_table, make_webdataset


def entries(*args, **kwargs):
    out = list(read_source(*args, **kwargs))
    return [e for e in out if isinstance(e, Sample)], [e for e in out if isinstance(e, Problem)]


def test_karpathy_every_split_every_sentence(tmp_path):
    path = make_karpathy(tmp_path, {"train": 2, "restval": 1, "val": 1, "test": 2}, captions=5)
    samples, problems = entries(str(path), "karpathy")
    assert problems == [] and len(samples) == 30
    assert [s.split for s in samples[::5]] == ["train", "train", "train", "val", "test", "test"]  # restval trains
    assert samples[0].image.endswith("train2014/COCO_train2014_000000000000.jpg")
    assert samples[15].image.endswith("val2014/COCO_val2014_000000000003.jpg")
    assert {s.image for s in samples[:5]} == {samples[0].image}  # an image's captions share its file
    assert samples[1].text == "The square is red." and samples[1].id == "1"


def test_karpathy_flickr_layout_and_problems(tmp_path):
    path = make_karpathy(tmp_path, {"test": 2}, captions=2, name="dataset_flickr30k.json", coco_layout=False)
    doc = json.loads(path.read_text())
    doc["images"][1]["sentences"][1] = {"sentid": 99}          # no raw, no tokens
    doc["images"].append({"filename": "gone.jpg", "split": "test", "sentences": [{"raw": "x", "sentid": 7}]})
    doc["images"].append({"filename": "y.jpg", "split": "dev", "sentences": []})
    path.write_text(json.dumps(doc))
    samples, problems = entries(str(path), "karpathy")
    assert [s.id for s in samples] == ["0", "1", "2"] and samples[0].image == str(tmp_path / "COCO_x_000000000000.jpg")
    reasons = sorted(p.reason for p in problems)
    assert reasons == ["'split' must be one of train, restval, val, test, got 'dev'",
                       "a sentence needs a 'raw' string (or a 'tokens' list)", "file not found"]
    assert any(p.where.endswith("images[1].sentences[1]") for p in problems)


def test_aic_chinese_captions(tmp_path):
    samples, problems = entries(str(make_aic(tmp_path, n=2)), "aic", image_dir=str(tmp_path / "images"))
    assert problems == [] and len(samples) == 6
    assert samples[0].lang == "zh" and samples[0].text == "一个红色的方块" and samples[2].text == "一个图形"
    assert samples[0].id == f"{0:040x}_0" and samples[0].image == samples[2].image


def test_csv_and_tsv_tables(tmp_path):
    samples, problems = entries(str(make_table(tmp_path / "t", n=3)), "csv")
    assert problems == [] and [s.text for s in samples] == [describe(i, 0) for i in range(3)]
    assert samples[0].image == str(tmp_path / "t" / "images" / "0.png") and samples[0].where.endswith(":2")
    samples, _ = entries(str(make_table(tmp_path / "c", n=2, sep=",", name="x.csv")), "csv")
    assert samples[1].text == describe(1, 0) + ", with a comma"
    _, problems = entries(str(tmp_path / "c" / "x.csv"), "csv", caption_key="caption")
    assert len(problems) == 1 and "no column 'caption' in the header" in problems[0].reason
    bad = tmp_path / "c" / "bad.csv"
    bad.write_text("filepath,title\nimages/0.png\nimages/9.png,missing\n")
    _, problems = entries(str(bad), "csv")
    assert [p.reason for p in problems] == ["expected 2 fields separated by ','", "file not found"]


def test_webdataset_members_read_in_place(tmp_path):
    shards = make_webdataset(tmp_path / "wds", shards=3, per_shard=2, audio=True)
    assert expand_braces("a/{00000..00002}.tar") == ["a/00000.tar", "a/00001.tar", "a/00002.tar"]
    pattern = str(tmp_path / "wds" / "{00000..00001}.tar")
    assert shard_paths(pattern) == [str(p) for p in shards[:2]]
    assert shard_paths(str(tmp_path / "wds")) == shard_paths(str(tmp_path / "wds" / "*.tar"))
    samples, problems = entries(pattern, "webdataset")
    assert problems == [] and [s.id for s in samples] == ["000000000", "000000001", "000010000", "000010001"]
    assert samples[2].text == describe(2, 0)
    with tarfile.open(shards[1]) as tar:  # the byte range names exactly the member's bytes
        assert archive.read_bytes(samples[2].image) == tar.extractfile("000010000.jpg").read()
        assert archive.read_bytes(samples[2].audio) == tar.extractfile("000010000.wav").read()
    with pytest.raises(FileNotFoundError, match="shard not found"):
        shard_paths(str(tmp_path / "wds" / "{00000..00009}.tar"))


def test_webdataset_problems(tmp_path):
    root = tmp_path / "wds"
    make_webdataset(root, shards=1, per_shard=1)
    with tarfile.open(root / "00001.tar", "w") as tar:
        import io
        for name, data in (("k1.txt", b"caption only"), ("k2.jpg", b"not an image"), ("k2.json", b"{bad")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / "00002.tar").write_bytes(b"\x1f\x8b compressed")
    _, problems = entries(str(root / "*.tar"), "webdataset")
    reasons = [p.reason for p in problems]
    assert "no image (jpg/jpeg/png/webp) or audio member (has: txt)" in reasons[0]
    assert reasons[1].startswith("invalid JSON") and problems[1].where.endswith("k2.json")
    assert "not an uncompressed tar shard" in reasons[2]


def test_karpathy_prepares_all_splits_in_one_directory(tmp_path, tiny_cfg):
    from src.data.prepare import prepare
    from src.data.records import open_prepared
    path = make_karpathy(tmp_path / "src", {"train": 3, "restval": 1, "val": 1, "test": 2}, captions=2)
    meta = prepare(str(path), str(tmp_path / "out"), tiny_cfg.prepare, "karpathy", log=lambda *a: None)
    assert {k: v["count"] for k, v in meta["splits"].items()} == {"train": 8, "val": 2, "test": 4}
    assert meta["splits"]["test"]["modalities"] == {"text": 4, "image": 4, "audio": 0}
    assert meta["image"]["standardize"]["rows"] == 8 * 4  # statistics from the training split only (4 grid regions)
    assert open_prepared(tmp_path / "out").meta["source"]["format"] == "karpathy"


def test_webdataset_and_csv_prepare(tmp_path, tiny_cfg):
    from src.data.prepare import main
    make_webdataset(tmp_path / "wds", shards=2, per_shard=2, audio=True)
    assert main([str(tmp_path / "wds" / "{00000..00001}.tar"), str(tmp_path / "w"), "--format", "webdataset",
                 "--config", "config/pretrain_tiny.yaml"]) == 0
    meta = json.loads((tmp_path / "w" / "meta.json").read_text())
    assert meta["splits"]["train"]["modalities"] == {"text": 4, "image": 4, "audio": 4}
    table = make_table(tmp_path / "t", n=3, sep=",", name="pairs.csv")
    (tmp_path / "t" / "pairs.csv").write_text(table.read_text().replace("filepath,title", "img,caption"))
    assert main([str(table), str(tmp_path / "c"), "--format", "csv", "--csv-img-key", "img", "--csv-caption-key",
                 "caption", "--config", "config/pretrain_tiny.yaml"]) == 0
    assert json.loads((tmp_path / "c" / "meta.json").read_text())["counts"]["written"] == 3


def test_a_format_brings_its_own_flags(tmp_path, capsys):
    """Each format's flags are listed under it in --help; one given with another format is one line, exit status 2,
    and nothing is written."""
    import pytest
    from src.data.prepare import main
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    assert usage.split("format csv:")[1].lstrip().startswith("--csv-img-key")
    assert usage.split("format vqa:")[1].lstrip().startswith("--annotations")
    table = make_table(tmp_path / "t", n=3, sep=",", name="pairs.csv")
    assert main([str(table), str(tmp_path / "c"), "--format", "csv", "--annotations", str(table)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --annotations is read with format vqa only (this source's format: csv)"]
    assert not (tmp_path / "c").exists()
