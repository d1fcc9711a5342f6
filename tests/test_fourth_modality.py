"""A fourth modality added without editing src/: tests/plugins/sketch.py registers it (OPT_PLUGINS), and the data
pipeline, pre-training and retrieval fine-tuning take it as they take the other three
(tests/fourth_modality_check.py runs in a process of its own, so that the plugin is loaded before anything else)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY, WORDS, make_manifest


@pytest.mark.e2e
def test_a_plugin_modality_is_padded_masked_and_trained():
    seen = json.loads(run("-m", "tests.fourth_modality_check").strip().splitlines()[-1])
    assert seen["modalities"] == ["text", "image", "audio", "sketch"]
    assert seen["input_columns"][-3:] == ["sketch_feat", "sketch_boxes", "sketch_mask"]
    assert seen["loss_names"] == ["mlm", "mvfr", "mrc", "mafr", "mam_nce", "sketch_fr", "match", "dtr", "dir"]
    assert seen["sketch_mask"] == [3.0] * 8 and seen["sketch_masked"] > 0  # padded, and some regions masked
    assert all(row == [1.0, 1.0, 1.0, 1.0] for row in seen["present"])
    assert {"sketch->text", "text->sketch", "sketch->image", "audio->sketch"} <= set(seen["directions"])
    pretrain, retrieval = np.array(seen["pretrain"]), np.array(seen["retrieval"])
    assert np.isfinite(pretrain).all() and pretrain[5] > 0  # the sketch's feature regression
    assert np.isfinite(retrieval).all() and retrieval[1] > 0  # InfoNCE over the six pairs of modalities
    assert seen["weights"]["sketch_fr"] == 0.5 and seen["weights"]["mvfr"] == 1.0  # its weight: loss.further
    assert seen["misspelt"] == "loss.further: 'sketch_rf' is no masked loss of a registered modality (known: sketch_fr)"


def test_without_the_plugin_there_are_three():
    from src.modality import MODALITIES
    assert MODALITIES == ("text", "image", "audio")


def plugin_env() -> dict:
    return {**os.environ, "OPT_PLUGINS": "tests.plugins.sketch", "PYTHONPATH": str(ROOT)}


def run(*command, timeout=900) -> str:
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=plugin_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command[:3]}: {done.stderr[-3000:]}"
    return done.stdout


def add_sketches(manifest: Path) -> None:
    """Each sample of the manifest gets a sketch: three regions whose features say which of the 12 words its caption
    starts with (so that a sketch and its caption belong together), as precomputed .npz files."""
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    (manifest.parent / "sketch").mkdir()
    rng = np.random.default_rng(0)
    for row in rows:
        first = WORDS.index(row["text"].split()[0])
        features = rng.normal(0, 0.1, (3, 6)).astype(np.float32)
        features[:, first % 6] += 1.0 + first // 6
        boxes = np.array([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 1, 1]], np.float32)
        np.savez(manifest.parent / "sketch" / f"{row['id']}.npz", features=features, norm_bb=boxes)
        row["sketch"] = f"sketch/{row['id']}.npz"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.e2e
def test_a_plugin_modality_is_prepared_pretrained_and_retrieved(tmp_path):
    """The whole path a user takes with a modality of their own: prepare a manifest that names its files, pre-train
    two steps, fine-tune retrieval two steps and evaluate retrieval from it (sketch->text); no file under src/ is
    edited."""
    manifest = make_manifest(tmp_path / "src", n=24, val=8, partial=False)
    add_sketches(manifest)
    prepared, pretrained, retrieval = tmp_path / "prepared", tmp_path / "pretrain", tmp_path / "retrieval"
    run("-m", "src.data.prepare", str(manifest), str(prepared), "--config", str(TINY))
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["sketch"]["feature_dim"] == 6 and meta["splits"]["train"]["modalities"]["sketch"] == 16
    run("train.py", "--config", str(TINY), "--set", f"data.path={prepared}", "train.max_steps=2",
        f"train.output_dir={pretrained}")
    logged = [json.loads(line) for line in (pretrained / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["sketch_fr"]) for e in logged if "sketch_fr" in e) and "sketch_fr" in logged[-1]
    run("train.py", "--config", str(ROOT / "config" / "retrieval_tiny.yaml"), "--set", f"data.path={prepared}",
        f"model.init_from={pretrained}", "train.max_steps=2", f"train.output_dir={retrieval}")
    report = tmp_path / "eval.json"
    run("eval.py", "--task", "retrieval", "--ckpt", str(retrieval), "--set", "eval.directions=[sketch->text]",
        "eval.baseline_text=", "--out", str(report))
    results = json.loads(report.read_text())
    sketch_to_text = results["directions"]["sketch->text"]
    assert results["items"] == 8 and sketch_to_text["candidates"] == 8, results
    assert 0 <= sketch_to_text["two_stage"]["R@10"] <= 100 and sketch_to_text["chance"]["R@10"] > 0, sketch_to_text
