"""A run carries how its data was prepared: data for fine-tuning is prepared --like the run (after its training data
is gone), and data prepared otherwise, a recipe for another model size or an output folder of another run are each
refused before the first step in one line."""
import json
import shutil

import pytest

import train as train_script
from src.data.lineage import SETTINGS_DIR
from src.data.prepare import prepare
from src.data.records import open_prepared
from tests.conftest import ROOT, make_manifest, tiny_config

RETRIEVAL_TINY = str(ROOT / "config" / "retrieval_tiny.yaml")
QUIET = dict(log=lambda *a: None)


@pytest.mark.e2e
def test_prepare_like_a_run_and_refusals(prepared, pretrained_run, tmp_path, capsys, monkeypatch):
    settings = pretrained_run / SETTINGS_DIR
    assert (settings / "vocab.txt").read_bytes() == (prepared / "vocab.txt").read_bytes()
    assert open_prepared(settings).splits == [] and open_prepared(settings).meta["trained_on"] == str(prepared)

    manifest = make_manifest(tmp_path / "new", n=20, val=4)
    moved = tmp_path / "moved"  # the run's training data is gone: --like RUN still prepares alike
    shutil.move(str(prepared), str(moved))
    try:
        prepare(str(manifest), str(tmp_path / "like"), tiny_config().prepare, like=str(pretrained_run), **QUIET)
    finally:
        shutil.move(str(moved), str(prepared))
    like = json.loads((tmp_path / "like" / "meta.json").read_text())
    reference = open_prepared(prepared).meta
    assert like["image"]["standardize"] == reference["image"]["standardize"] and like["like"] == str(prepared)
    prepare(str(manifest), str(tmp_path / "own"), tiny_config().prepare, **QUIET)  # its own statistics

    def finetune(data, out, *rest):
        return train_script.main(["--finetune", "retrieval", str(pretrained_run), str(data), str(out), *rest])
    assert finetune(tmp_path / "own", tmp_path / "a", RETRIEVAL_TINY) == 2
    err = capsys.readouterr().err
    assert "was prepared otherwise than the data of" in err and "image standardize" in err
    assert f"--like {pretrained_run}" in err and len(err.strip().splitlines()) == 1

    assert finetune(tmp_path / "like", tmp_path / "a", RETRIEVAL_TINY, "train.max_steps=1") == 0
    monkeypatch.chdir(tmp_path)  # the same run named by relative paths: resumed (here: complete), not refused
    assert finetune("like", "a", RETRIEVAL_TINY, "train.max_steps=1") == 0
    assert "the run is complete" in capsys.readouterr().out
    monkeypatch.undo()
    assert finetune(tmp_path / "like", tmp_path / "a", RETRIEVAL_TINY, "train.max_steps=1", "train.lr=0.5") == 2
    assert "holds a run of another recipe or data (differs in train.lr)" in capsys.readouterr().err
    assert finetune(tmp_path / "like", tmp_path / "b", str(ROOT / "config" / "retrieval_coco.yaml")) == 2
    assert "sets model.hidden 768 (pre-trained: 32)" in capsys.readouterr().err


def test_like_a_set_without_labels_keeps_the_new_sets_own(tmp_path):
    """A pre-training set has no labels: a labelled set prepared --like it collects its own label set (a reference
    with labels would refuse every label outside its own)."""
    labelled = make_manifest(tmp_path / "labelled", n=12, val=2)
    rows = [json.loads(line) for line in labelled.read_text().splitlines()]
    unlabelled = labelled.with_name("unlabelled.jsonl")
    unlabelled.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "labels"}) + "\n" for r in rows))
    prepare(str(unlabelled), str(tmp_path / "reference"), tiny_config().prepare, **QUIET)
    meta = prepare(str(labelled), str(tmp_path / "like"), tiny_config().prepare, like=str(tmp_path / "reference"),
                   **QUIET)
    assert meta["labels"] == sorted({label for r in rows for label in r["labels"]}) and meta["counts"]["skipped"] == 0
