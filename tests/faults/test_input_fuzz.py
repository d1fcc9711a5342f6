"""A fuzz pass over the inputs of preparation: broken manifest lines and broken `.npz` features. Each one stops
preparation with the file, the line and what is wrong (nothing written), or with --on-error skip is left out and
counted; never a traceback, never a silent drop."""
from __future__ import annotations

import json

import numpy as np
import pytest

from src.data.prepare import PrepareError, prepare
from tests.conftest import make_manifest, tiny_config


def good_npz(path, n=5, d=24, **replace):
    arrays = {"features": np.random.default_rng(0).random((n, d), dtype=np.float32),
              "norm_bb": np.tile(np.array([[0.1, 0.1, 0.5, 0.5]], np.float32), (n, 1))}
    arrays.update(replace)
    np.savez(path, **arrays)
    return path


MANIFEST_LINES = {
    "truncated line": lambda root: b'{"id": "x", "text": "a b',
    "wrong types": lambda root: b'{"id": "w", "text": 7}',
    "labels not a list of strings": lambda root: b'{"id": "l", "text": "a b", "labels": [1, 2]}',
    "a JSON array, not an object": lambda root: b"[1, 2, 3]",
    "non-UTF-8 bytes": lambda root: b'{"id": "n", "text": "caf\xe9 \xff"}',
    "path outside the folder, not an image": lambda root: b'{"id": "o", "image": "../../../../../etc/hostname", '
                                                          b'"text": "x y"}',
    "symlink loop": lambda root: (root / "loop_a").symlink_to(root / "loop_b") or
    (root / "loop_b").symlink_to(root / "loop_a") or b'{"id": "s", "image": "loop_a", "text": "x y"}',
    "missing file": lambda root: b'{"id": "m", "image": "img/none.png", "text": "x y"}',
    "duplicate id": lambda root: b'{"id": "s000", "text": "again"}',
}

NPZ_FILES = {
    "npz: not a zip": lambda p: (p.write_bytes(b"garbage"), p)[1],
    "npz: features of wrong rank": lambda p: good_npz(p, features=np.zeros((2, 3, 4), np.float32)),
    "npz: NaN in features": lambda p: good_npz(p, features=np.full((5, 24), np.nan, np.float32)),
    "npz: features as strings": lambda p: good_npz(p, features=np.array([["a"] * 24] * 5)),
    "npz: boxes of another count": lambda p: good_npz(p, norm_bb=np.zeros((2, 4), np.float32)),
    "npz: no features array": lambda p: (np.savez(p, other=np.zeros(3)), p)[1],
    "npz: another feature width": lambda p: good_npz(p, d=7),
}


def run_both_ways(manifest, tmp_path):
    """(the error of on_error=fail, the meta of on_error=skip)."""
    cfg = tiny_config()
    with pytest.raises(PrepareError) as failed:
        prepare(str(manifest), str(tmp_path / "failed"), cfg.prepare, on_error="fail", log=lambda *a: None)
    assert not (tmp_path / "failed").exists()  # nothing written
    meta = prepare(str(manifest), str(tmp_path / "skipped"), cfg.prepare, on_error="skip", log=lambda *a: None)
    return str(failed.value), meta


@pytest.mark.parametrize("case", list(MANIFEST_LINES))
def test_a_broken_manifest_line_is_named_or_skipped_and_counted(case, tmp_path, record):
    manifest = make_manifest(tmp_path, n=8, val=2)
    manifest.write_bytes(manifest.read_bytes() + MANIFEST_LINES[case](tmp_path) + b"\n")
    error, meta = run_both_ways(manifest, tmp_path)
    assert f"{manifest}:9" in error, error  # the file and the line
    assert meta["counts"]["skipped"] == 1 and meta["counts"]["written"] == 8
    record(f"manifest: {case}", "stops naming file:line; --on-error skip counts 1",
           error.split(": ", 2)[-1][:48] + "...")


@pytest.mark.parametrize("case", list(NPZ_FILES))
def test_a_broken_npz_feature_file_is_named_or_skipped_and_counted(case, tmp_path, record):
    rows = [{"id": f"r{i}", "image": good_npz(tmp_path / f"r{i}.npz").name, "text": f"caption {i}",
             "labels": ["a"], "split": "val" if i >= 6 else "train"} for i in range(8)]
    bad = NPZ_FILES[case](tmp_path / "bad.npz")
    rows.append({"id": "bad", "image": bad.name, "text": "a broken one", "labels": ["a"]})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    error, meta = run_both_ways(manifest, tmp_path)
    assert "'bad'" in error and f"{manifest}:9" in error, error
    assert meta["counts"]["skipped"] == 1 and meta["counts"]["written"] == 8
    record(case, "stops naming the sample; --on-error skip counts 1", error.split(": ", 3)[-1][:48] + "...")


def test_a_huge_caption_is_cut_and_reported(tmp_path, record):
    manifest = make_manifest(tmp_path, n=8, val=2)
    huge = {"id": "h", "text": "word " * 200_000, "image": "img/0.png"}
    manifest.write_text(manifest.read_text() + json.dumps(huge) + "\n")
    said = []
    meta = prepare(str(manifest), str(tmp_path / "out"), tiny_config().prepare, log=said.append)
    assert meta["counts"]["written"] == 9 and meta["counts"]["truncated_text"] >= 1
    assert any("were cut" in str(s) for s in said)
    record("manifest: a 1 MB caption", "cut to max_tokens, counted and reported", "written, 1 cut")
