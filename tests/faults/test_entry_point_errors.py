"""Every entry point answers a wrong path, a checkpoint or export of another task, a dataset of another shape with one
line on stderr and exit status 2 (OPT_DEBUG=1 shows the traceback)."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import mindspore as ms
import pytest

import eval as eval_py
import export as export_py
import infer as infer_py
import train as train_py
from src.config import ConfigError
from src.data.prepare import main as prepare_main, prepare
from src.data.records import DatasetError
from src.train.checkpoint import CheckpointError
from tests.conftest import make_manifest, tiny_config
from tests.faults.conftest import TINY


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory):
    """The tiny set prepared with 3x3 image regions of 8-pixel patches: another feature width than the runs'."""
    root = tmp_path_factory.mktemp("wide")
    cfg = tiny_config("prepare.image.grid=3", "prepare.image.patch_pixels=8")
    prepare(str(make_manifest(root, n=16, val=4)), str(root / "out"), cfg.prepare, log=lambda *a: None)
    return root / "out"


CASES = {
    "train --resume of a missing file": (lambda w, d, t: train_py.main(
        ["--config", TINY, "--set", f"data.path={d}", f"train.output_dir={t.dir / 'run'}", "--resume",
         str(t.dir / "no.ckpt")]),
        "checkpoint not found"),
    "train on a missing dataset": (lambda w, d, t: train_py.main(
        ["--config", TINY, "--set", f"data.path={t.dir / 'nowhere'}"]), "not a prepared dataset"),
    "eval --ckpt of a missing directory": (lambda w, d, t: eval_py.main(
        ["--task", "retrieval", "--ckpt", str(t.dir / "no" / "run")]), "checkpoint not found"),
    "eval retrieval on a pre-training checkpoint": (lambda w, d, t: eval_py.main(
        ["--task", "retrieval", "--ckpt", str(w)]), "for another task"),
    "eval on a dataset of another feature width": (lambda w, d, t: eval_py.main(
        ["--task", "probe", "--ckpt", str(w), "--data", str(t.wide)]), "different model config"),
    "export --ckpt of a missing file": (lambda w, d, t: export_py.main(
        ["--task", "retrieval", "--ckpt", str(t.dir / "x.ckpt"), "--out", str(t.dir / "e")]), "checkpoint not found"),
    "infer --mindir of a missing export": (lambda w, d, t: infer_py.main(
        ["--mindir", str(t.dir / "none"), "--image", str(t.dir / "a.png")]), "bundle not found"),
    "infer --mindir of an export of an earlier version": (lambda w, d, t: infer_py.main(
        ["--mindir", str(t.old_export), "--image", str(t.dir / "a.png")]), "an export of an earlier version"),
    "infer --mindir of another task's export": (lambda w, d, t: infer_py.main(
        ["--task", "caption", "--mindir", str(t.fake_export), "--image", str(t.dir / "a.png")]),
        "exported for task 'retrieval'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_entry_point_errors_are_one_line(case, whole, prepared, wide_data, tmp_path, capsys, record):
    run, phrase = CASES[case]
    fake_export = tmp_path / "other"
    fake_export.mkdir()
    (fake_export / "bundle.json").write_text(json.dumps({
        "bundle_version": 1, "format": "MINDIR", "task": "retrieval", "graphs": {}, "config": {}, "files": {},
        "mindspore": ms.__version__, "requires": {"packages": {}, "modules": []},
        "features": {"data_settings": "data_settings", "trained_on": ""}}))
    old_export = tmp_path / "old.json"  # a sidecar, as exports were written before bundles
    old_export.write_text(json.dumps({"format": "MINDIR", "task": "retrieval", "graphs": {}, "config": {}}))
    capsys.readouterr()
    code = run(whole, prepared, SimpleNamespace(dir=tmp_path, wide=wide_data, fake_export=fake_export,
                                                old_export=old_export))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 0 and "Traceback" not in err
    assert phrase in err, err
    seen = re.sub(r"/tmp/\S*/", "", err[len("error: "):])  # file names without their temporary folders
    record(case, f"exit 2, one line with '{phrase}'", seen[:64] + ("..." if len(seen) > 64 else ""))


DEBUGGED = {  # an entry point on an input error past argument parsing, and the exception OPT_DEBUG=1 lets through
    "train.py on a missing dataset": (lambda t: train_py.main(
        ["--config", TINY, "--set", f"data.path={t / 'nowhere'}", f"train.output_dir={t / 'run'}"]), DatasetError),
    "eval.py on a missing checkpoint": (lambda t: eval_py.main(
        ["--task", "retrieval", "--ckpt", str(t / "no" / "run")]), CheckpointError),
    "prepare_data.sh with a bad config value": (lambda t: prepare_main(
        [str(make_manifest(t, n=4, val=0)), str(t / "out"), "--config", TINY, "--set", "prepare.shards=many"]),
        ConfigError),
}


@pytest.mark.parametrize("case", list(DEBUGGED))
def test_opt_debug_shows_the_traceback(case, tmp_path, monkeypatch, capsys):
    run, error = DEBUGGED[case]
    assert run(tmp_path) == 2 and capsys.readouterr().err.startswith("error: ")  # without it: one line
    monkeypatch.setenv("OPT_DEBUG", "1")
    with pytest.raises(error):
        run(tmp_path)
