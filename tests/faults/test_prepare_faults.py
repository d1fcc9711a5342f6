"""SIGKILL at any moment of scripts/prepare_data.sh: nothing a later step reads as complete is left behind, and the
rerun prepares the same samples as an uninterrupted run (equal content: every column of every split)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from src.data.records import DatasetError, open_prepared
from tests.conftest import ROOT, make_manifest
from tests.faults.conftest import small_disk

COLUMNS = ["text_ids", "n_text", "image_feat", "n_regions", "audio_feat", "n_audio", "labels"]


def prepare(manifest, out, **popen):
    command = ["bash", str(ROOT / "scripts" / "prepare_data.sh"), str(manifest), str(out), "--config",
               str(ROOT / "config" / "pretrain_tiny.yaml")]
    return subprocess.Popen(command, env=dict(os.environ, PYTHON=sys.executable), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, **popen)


def content(out) -> dict:
    """(split, sample index, column) -> the stored array, for every sample of a prepared dataset."""
    import mindspore.dataset as ds
    data = open_prepared(out)
    found = {}
    for split in data.meta["splits"]:
        rows = ds.MindDataset(data.files(split), columns_list=["index"] + COLUMNS, shuffle=False)
        for row in rows.create_dict_iterator(num_epochs=1, output_numpy=True):
            for c in COLUMNS:
                found[split, int(row["index"]), c] = row[c]
    return found


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep_ref")
    manifest = make_manifest(root, n=40, val=8)
    started = time.monotonic()
    job = prepare(manifest, root / "out")
    assert job.wait(timeout=600) == 0, job.stderr.read().decode()[-2000:]
    return manifest, content(root / "out"), time.monotonic() - started


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_killed_preparation_leaves_nothing_complete_and_the_rerun_is_the_same(reference, tmp_path, record, fraction):
    """Killed at a fraction of an uninterrupted run's time: start-up, feature extraction, shard writing, the end."""
    manifest, expected, duration = reference
    out = tmp_path / "out"
    job = prepare(manifest, out)
    time.sleep(fraction * duration)
    finished = job.poll() is not None
    if not finished:
        os.killpg(job.pid, signal.SIGKILL)  # the shell, python and its worker processes
        job.wait()
    state = "finished before the kill"
    if not finished:
        try:
            open_prepared(out)
            state = "complete (the kill came after the rename)"
        except DatasetError:
            state = "nothing complete left"
            assert not out.exists() or not (out / "meta.json").exists()
    rerun = prepare(manifest, out)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read().decode()[-2000:]
    assert same(content(out), expected)
    assert not list(tmp_path.glob(".out.partial-*"))  # the interrupted run's leftovers were removed
    record(f"SIGKILL at {fraction:.0%} of prepare_data.sh", "no complete-looking output; rerun equals uninterrupted",
           f"{state}; rerun equal")


def test_a_full_disk_while_preparing_stops_in_one_line_and_leaves_nothing(tmp_path, record):
    with small_disk(tmp_path / "small", "300k") as small:
        job = prepare(make_manifest(tmp_path, n=40, val=8), small / "out")
        err = job.communicate(timeout=600)[1].decode().strip().splitlines()
        left = list(small.iterdir())
    assert job.returncode == 1 and "writing the prepared data failed" in err[-1] and "nothing was written" in err[-1]
    assert not [line for line in err if "Traceback" in line] and left == []
    record("disk full (300 KB tmpfs) during prepare_data.sh", "exit 1 in one line, nothing left behind",
           err[-1].split("(", 1)[1][:40] + "...")
