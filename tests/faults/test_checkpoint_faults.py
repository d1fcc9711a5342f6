"""Damaged checkpoints, a full disk while saving, missing paths: resume takes the newest checkpoint that verifies and
continues exactly; nothing is deleted; every error is one line naming the file."""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import eval as eval_py
from src.train import checkpoint
from src.train.checkpoint import CheckpointError, checksum_path, damage, list_checkpoints, save_checkpoint
from tests.faults.conftest import small_disk, train

NAMES = ["loss", "mlm", "mvfr", "mrc", "mafr", "mam_nce", "match", "dtr", "lr", "grad_norm"]


def log_of(out: Path) -> list:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def copy_run(whole: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    return out


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def flip_byte(path: Path) -> None:
    """Change one byte in the middle: the file still loads, only its checksum tells."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["truncated", "one byte changed"])
def test_resume_skips_damaged_checkpoints_and_continues_exactly(whole, prepared, tmp_path, capsys, record, how):
    out = copy_run(whole, tmp_path)
    damaged = [out / "step_00000008.ckpt", out / "step_00000006.ckpt"]
    for path in damaged:
        (truncate if how == "truncated" else flip_byte)(path)
    capsys.readouterr()
    assert train(prepared, out, "--resume") == 0
    said = capsys.readouterr().out
    assert "resumed from" in said and "step_00000004.ckpt at step 4" in said
    for path in damaged:
        assert f"skipped {path}" in said and path.exists()  # reported, left in place
    again, first = log_of(out), log_of(whole)
    assert [e["step"] for e in again] == list(range(1, 9))
    np.testing.assert_allclose([[e[n] for n in NAMES] for e in again[4:]], [[e[n] for n in NAMES] for e in first[4:]],
                               rtol=1e-5)
    record(f"newest 2 checkpoints {how}", "resume from step 4, exact losses after", "resumed at 4, steps 5-8 equal")


@pytest.mark.e2e
def test_every_checkpoint_damaged_is_one_line_naming_them(whole, prepared, tmp_path, capsys, record):
    out = copy_run(whole, tmp_path)
    for path in list_checkpoints(out):
        truncate(path)
    capsys.readouterr()
    assert train(prepared, out, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "every checkpoint is damaged" in err and "step_00000002.ckpt" in err
    assert "Traceback" not in err and len(list_checkpoints(out)) == 4
    record("every checkpoint truncated", "exit 2, one line naming them, none deleted",
           "exit 2: " + err[err.index("every checkpoint"):][:40] + "...")


def test_a_damaged_checkpoint_given_by_name_is_refused(whole, tmp_path, capsys, record):
    out = copy_run(whole, tmp_path)
    flip_byte(out / "step_00000008.ckpt")
    assert "SHA-256 differs" in damage(out / "step_00000008.ckpt")
    assert damage(out / "step_00000006.ckpt") is None
    assert eval_py.main(["--task", "probe", "--ckpt", str(out / "step_00000008.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "damaged checkpoint" in err and "Traceback" not in err
    record("eval on a damaged checkpoint file", "exit 2, 'damaged checkpoint'", "refused")


def test_a_missing_checkpoint_is_named(tmp_path, capsys, record):
    assert eval_py.main(["--task", "retrieval", "--ckpt", str(tmp_path / "no" / "such" / "dir")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "config.yaml" not in err
    record("eval --ckpt /no/such/dir", "'checkpoint not found: PATH'", "named")


def test_a_full_disk_while_saving_keeps_the_earlier_checkpoints(tmp_path, monkeypatch, record):
    cell = ms.nn.Dense(3, 2)
    first = save_checkpoint(cell, tmp_path, 1, 0, 1)
    before = first.read_bytes()

    def no_space(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")  # what a write cut short leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.ms, "save_checkpoint", no_space)
    with pytest.raises(CheckpointError, match="writing the checkpoint failed .*No space left.*untouched"):
        save_checkpoint(cell, tmp_path, 2, 0, 2, keep=1)
    assert list_checkpoints(tmp_path) == [first] and first.read_bytes() == before and damage(first) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, checksum_path(first).name]  # no partial files
    record("disk full while writing a checkpoint", "clear error, earlier checkpoint intact, no partial file",
           "CheckpointError; step 1 verifies")


@pytest.mark.e2e
def test_a_real_full_disk_while_training_stops_clearly_and_resumes(prepared, tmp_path, capsys, record):
    """train.py into a 30 MB tmpfs (two tiny checkpoints fit): the checkpoint that does not fit stops the run with one
    line; the earlier ones verify, no partial file is left, and the run resumes elsewhere from the last one."""
    with small_disk(tmp_path / "small", "30m") as small:
        out = small / "run"
        code = train(prepared, out, "train.max_steps=40")
        err = capsys.readouterr().err.strip()
        kept = list_checkpoints(out)
        assert code == 1 and "writing the checkpoint failed" in err and "No space left" in err  # outside: 1
        assert err.count("\n") == 0 and "Traceback" not in err
        assert kept and all(damage(p) is None for p in kept)
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial files
        moved = tmp_path / "moved"
        shutil.copytree(out, moved)
    assert train(prepared, moved, "train.max_steps=40", "--resume") == 0
    assert f"at step {int(kept[-1].stem[5:])}" in capsys.readouterr().out
    record("disk full (30 MB tmpfs) during train.py", "exit 1 in one line, earlier checkpoints verify, resumable",
           f"stopped after step {int(kept[-1].stem[5:])}, resumed")


def test_retention_keeps_the_newest_and_their_checksums(tmp_path, record):
    cell = ms.nn.Dense(3, 2)
    for step in range(1, 6):
        save_checkpoint(cell, tmp_path, step, 0, step, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step_00000004.ckpt", "step_00000004.ckpt.sha256", "step_00000005.ckpt",
                     "step_00000005.ckpt.sha256"]
    assert all(damage(p) is None for p in list_checkpoints(tmp_path))
    record("retention keep=2 over 5 saves", "2 newest kept with checksums", "2 kept, both verify")
