"""The compile cache: one folder per recipe, reused by a second start with the same numbers, never by another recipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src import compile_cache
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_key_changes_with_what_shapes_a_graph_only(prepared):
    base = tiny_config(f"data.path={prepared}")
    key = compile_cache.recipe_key("train", base)
    assert key == compile_cache.recipe_key("train", tiny_config(f"data.path={prepared}"))
    # where the run writes and which copy of the same data it reads do not count
    assert key == compile_cache.recipe_key("train", tiny_config(f"data.path={prepared}", "train.output_dir=/x"))
    for changed in (tiny_config(f"data.path={prepared}", "model.layers=3"),
                    tiny_config(f"data.path={prepared}", "data.batch_size=5"),
                    tiny_config(f"data.path={prepared}", "model.dropout=0.2")):
        assert compile_cache.recipe_key("train", changed) != key
    assert compile_cache.recipe_key("eval", base) != key
    assert compile_cache.recipe_key("train", base, {"resume": True}) != key


@pytest.mark.e2e
def test_second_start_reuses_the_graphs_and_trains_the_same(prepared, tmp_path):
    env = dict(os.environ, OPT_COMPILE_CACHE=str(tmp_path / "cache"))
    run = lambda out: subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "config/pretrain_tiny.yaml"), "--set",
         f"data.path={prepared}", "train.max_steps=3", "train.log_every=1", f"train.output_dir={tmp_path / out}"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    first = run("first")
    assert first.returncode == 0, first.stderr[-2000:]
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1
    graphs = sorted(folders[0].glob("rank_0/graph_cache/compile_cache_*.mindir"))
    assert graphs, "the first start wrote no compiled graph"
    written = {g: g.stat().st_mtime_ns for g in graphs}
    second = run("second")
    assert second.returncode == 0, second.stderr[-2000:]
    assert list((tmp_path / "cache").iterdir()) == folders  # the same recipe folder ...
    assert {g: g.stat().st_mtime_ns for g in graphs} == written  # ... read, not compiled again
    losses = lambda out: [json.loads(line)["loss"] for line in (tmp_path / out / "train_log.jsonl").open()]
    assert losses("second") == losses("first")


def test_only_the_first_entry_point_of_a_process_uses_the_cache(prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("OPT_COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compile_cache, "_used", False)
    cfg = tiny_config(f"data.path={prepared}")
    assert compile_cache.enable_compile_cache("eval", cfg) is not None
    assert compile_cache.enable_compile_cache("eval", cfg) is None  # graph numbering restarts only with a process
    monkeypatch.setenv("OPT_COMPILE_CACHE", "off")
    monkeypatch.setattr(compile_cache, "_used", False)
    assert compile_cache.enable_compile_cache("eval", cfg) is None


@pytest.mark.parametrize("keep", [1, 3])
def test_prune_keeps_the_most_recently_used_folders(tmp_path, keep):
    for i in range(5):
        (tmp_path / f"r{i}").mkdir()
        os.utime(tmp_path / f"r{i}", (i, i))
    compile_cache.prune(tmp_path, keep, current=tmp_path / "r0")
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(["r0"] + [f"r{i}" for i in range(5 - keep + 1, 5)])
