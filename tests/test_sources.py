import json

import pytest

from src.data.sources import Problem, Sample, read_source
from tests.conftest import make_manifest, write_image, write_tone


def split_entries(entries):
    entries = list(entries)
    return [e for e in entries if isinstance(e, Sample)], [e for e in entries if isinstance(e, Problem)]


def test_manifest_paths_relative_to_manifest_and_partial_modalities(tmp_path):
    path = make_manifest(tmp_path / "set", n=10, val=2)
    samples, problems = split_entries(read_source(str(path)))
    assert problems == [] and len(samples) == 10
    s = samples[0]
    assert s.image == str((tmp_path / "set" / "img" / "0.png").resolve())
    assert s.text == "red apple number 0" and s.labels == ["red"] and s.split == "train"
    assert samples[2].audio is None and samples[3].image is None  # partial modalities are allowed
    assert [s.split for s in samples].count("val") == 2
    assert samples[4].where == f"{path}:5"


def test_manifest_problems_name_the_line(tmp_path):
    write_image(tmp_path / "a.png", 0)
    lines = ['{"id": "a", "image": "a.png", "text": "ok"}',
             '{"id": "b", "text": "dup"',                       # invalid JSON
             '{"id": "a", "text": "again"}',                    # duplicate id
             '{"id": "c", "image": "missing.png"}',             # missing file
             '{"id": "d", "text": "   "}',                      # empty caption
             '{"id": "e", "lang": "en"}',                       # no modality
             '["not", "an", "object"]',
             '{"id": "f", "labels": "animal", "text": "x"}']    # labels not a list
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    samples, problems = split_entries(read_source(str(path)))
    assert [s.id for s in samples] == ["a"]
    got = {p.where.rsplit(":", 1)[1]: p for p in problems}
    assert "invalid JSON" in got["2"].reason
    assert got["3"].reason == f"duplicate id (first seen at {path}:1)"
    assert got["4"].reason == "file not found" and got["4"].file.endswith("missing.png")
    assert got["5"].reason == "empty caption"
    assert got["6"].reason == "no text, image or audio"
    assert "must be a JSON object" in got["7"].reason
    assert "'labels' must be a list" in got["8"].reason
    assert got["4"].message().startswith(f"{path}:4: sample 'c': ")


def test_coco_captions(tmp_path):
    (tmp_path / "train2017").mkdir()
    for i in (1, 2):
        write_image(tmp_path / "train2017" / f"{i:012d}.jpg", i)
    doc = {"images": [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "000000000002.jpg"}],
           "annotations": [{"id": 10, "image_id": 1, "caption": "A dog."},
                           {"id": 11, "image_id": 1, "caption": "A pup."},
                           {"id": 12, "image_id": 2, "caption": "A cat."}, {"id": 13, "image_id": 9, "caption": "?"}]}
    (tmp_path / "annotations").mkdir()
    path = tmp_path / "annotations" / "captions_train2017.json"
    path.write_text(json.dumps(doc))
    samples, problems = split_entries(read_source(str(path), "coco", split="val",
                                                  image_dir=str(tmp_path / "train2017")))
    assert [(s.id, s.text) for s in samples] == [("10", "A dog."), ("11", "A pup."), ("12", "A cat.")]
    assert samples[0].image == samples[1].image and samples[0].split == "val"
    assert len(problems) == 1 and "image_id 9 is not in 'images'" in problems[0].reason
    assert problems[0].where.endswith("annotations[3]")


def test_localized_narratives(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "audio" / "coco_val").mkdir(parents=True)
    write_image(tmp_path / "images" / "000000137576.jpg", 0)
    write_image(tmp_path / "images" / "0a1b2c.jpg", 1)
    write_tone(tmp_path / "audio" / "coco_val" / "coco_val_137576_93.ogg", 300)
    write_tone(tmp_path / "audio" / "coco_val" / "oi_0a1b2c_7.ogg", 300)
    rows = [{"dataset_id": "mscoco_val2017", "image_id": "137576", "annotator_id": 93,
             "caption": "In this image we can see a dog.", "timed_caption": [], "traces": [],
             "voice_recording": "coco_val/coco_val_137576_93.ogg"},
            {"dataset_id": "open_images_validation", "image_id": "0a1b2c", "annotator_id": 7,
             "caption": "A red car.", "voice_recording": "coco_val/oi_0a1b2c_7.ogg"},
            {"dataset_id": "open_images_validation", "image_id": "ffff", "annotator_id": 1, "caption": "gone"}]
    path = tmp_path / "narratives.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples, problems = split_entries(read_source(str(path), "narratives"))
    assert [s.id for s in samples] == ["137576_93", "0a1b2c_7"]
    assert samples[0].image.endswith("000000137576.jpg") and samples[0].audio.endswith("coco_val_137576_93.ogg")
    assert samples[1].text == "A red car."
    assert len(problems) == 1 and problems[0].reason == "file not found" and problems[0].file.endswith("ffff.jpg")


def test_unknown_format_and_missing_source(tmp_path):
    with pytest.raises(ValueError, match="unknown source format"):
        read_source(str(tmp_path), "tsv")
    with pytest.raises(FileNotFoundError, match="source file not found"):
        read_source(str(tmp_path / "none.jsonl"))
