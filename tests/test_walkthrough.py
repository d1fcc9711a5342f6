"""docs/own_data.md run literally, as a user runs it from a clone: its bash blocks, in order, in a folder that holds the
repository's entry points (a path with a space), with `runs/demo/pretrain` a tiny pre-training run, `coco/` a
generated Karpathy set (COCO's layout) and `my_photos/` unseen images. The one change to the page's text: the two
fine-tuning lines get SHORTER appended (one epoch, small batches), as a user may append key=value settings."""
import json
import os
import re
import subprocess
import sys

import cv2
import pytest

import infer as infer_script
from tests.conftest import ROOT
from tests.formats import make_karpathy, picture

WALKTHROUGH = ROOT / "docs" / "own_data.md"
ENTRY_POINTS = ("scripts", "src", "config", "train.py", "eval.py", "infer.py", "export.py")
FINETUNE_LINES = re.compile(r"^bash scripts/(run_standalone_train_retrieval|train_caption)\.sh ")
# the default fine-tuning recipes, shortened: one epoch of batches the tiny set fills, a short warm start
SHORTER = ["train.epochs=1", "data.batch_size=8", "retrieval.warm_start_epochs=2", "eval.batch_size=8",
           "generate.batch_size=8", "generate.max_len=8"]


def script(name, *args):
    """A script of scripts/ as the docs run it; its output, after checking it succeeded."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / name), *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
    return done.stdout


def bash_blocks(page):
    """The ```bash blocks of a markdown page, in order, each as its text."""
    return re.findall(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M)


def as_tested(block):
    return "\n".join(line + " " + " ".join(SHORTER) if FINETUNE_LINES.match(line) else line
                      for line in block.splitlines())


def user_folder(base, pretrained):
    """A folder laid out as a clone the walkthrough runs in, with its inputs."""
    home = base / "my clone"
    home.mkdir()
    for name in ENTRY_POINTS:
        (home / name).symlink_to(ROOT / name)
    (home / "runs" / "demo").mkdir(parents=True)
    (home / "runs" / "demo" / "pretrain").symlink_to(pretrained)
    make_karpathy(home / "coco", {"train": 8, "restval": 2, "val": 2, "test": 4}, captions=2)
    photos = home / "my_photos"
    photos.mkdir()
    for i in range(12):
        cv2.imwrite(str(photos / f"p{i:02d}.jpg"), picture(40 + i))
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.png").write_bytes(b"not a png")
    return home


def run_block(block, home, prelude):
    """One bash block (after the variables set by earlier blocks) in `home`; its stdout."""
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + as_tested(block)], cwd=home, text=True,
                          capture_output=True, env=env, timeout=900)
    assert done.returncode == 0, f"{block}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.e2e
def test_own_data_page_runs_as_written(pretrained_run, tmp_path, capsys):
    home = user_folder(tmp_path, pretrained_run)
    blocks = bash_blocks(WALKTHROUGH)
    assert len(blocks) == 7 and sum(bool(FINETUNE_LINES.match(line)) for b in blocks for line in b.splitlines()) == 2
    prelude, printed = "", []
    for block in blocks:
        printed.append(run_block(block, home, prelude))
        prelude += "".join(line + "\n" for line in block.splitlines() if re.match(r"^[A-Z_]+=", line))

    meta = json.loads((home / "data" / "coco" / "meta.json").read_text())
    assert {s: v["count"] for s, v in meta["splits"].items()} == {"train": 20, "val": 4, "test": 8}
    retrieval = home / "runs" / "coco_retrieval"
    report = json.loads((retrieval / "eval_retrieval_test.json").read_text())
    assert list(report["directions"]) == ["image->text", "text->image"]  # what an image-text set supports
    protocol = report["protocol"]["all"]
    assert (protocol["images"], protocol["texts"]) == (4, 8) and 0 < protocol["RSUM"] <= 600
    assert "RSUM" in printed[3] and "frozen R@1" in printed[3]  # the baseline fitted on the run's training data
    assert "CIDEr" in printed[4] and "ROUGE-L" in printed[4]
    # test_caption.sh ran what an image-caption set supports: caption, not asr or caption_ia
    assert sorted(p.name for p in (home / "runs" / "coco_caption").glob("eval_*.json")) == ["eval_caption_test.json"]

    lines = [json.loads(line) for line in (home / "captions.jsonl").read_text().splitlines()]
    assert len(lines) == 13 and [line["file"] for line in lines][-1].endswith("p11.jpg")
    assert "cannot decode image" in lines[0]["error"] and all(isinstance(x.get("text"), str) for x in lines[1:])

    results = [json.loads(line) for line in printed[5].splitlines() if line.startswith("{")]
    assert [r["rank"] for r in results] == list(range(1, 11))
    assert len({r["file"] for r in results}) == 10 and all(r["file"].endswith(".jpg") for r in results)
    # eval.rerank_k 16 covers the 12 photos: all are reranked, best fused score (cross-encoder + 20 x cosine) first
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert (home / "exports" / "coco_retrieval" / "bundle.json").is_file()
    assert (home / "exports" / "coco_caption" / "bundle.json").is_file()

    # beyond the page: a rerun resumes, a queries file, captions as the gallery for an image query
    again = run_block(blocks[2], home, prelude)
    assert "the run is complete" in again
    index = home / "my_photos.index"
    (tmp_path / "queries.txt").write_text("a red square on grey\n\nthe stripe is blue\n")
    capsys.readouterr()
    assert infer_script.main(["--index", str(index), "--queries", str(tmp_path / "queries.txt"), "--top", "3"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["query"], r["rank"]) for r in results] == [(q, k) for q in ("a red square on grey",
                                                                           "the stripe is blue") for k in (1, 2, 3)]
    (tmp_path / "captions.txt").write_text("".join(f"caption number {i}\n" for i in range(12)))
    assert infer_script.main(["--ckpt", str(retrieval), "--gallery", str(tmp_path / "captions.txt"),
                              "--gallery-modality", "text", "--index", str(tmp_path / "captions.index")]) == 0
    capsys.readouterr()
    assert infer_script.main(["--index", str(tmp_path / "captions.index"),
                              "--image", str(home / "my_photos" / "p03.jpg")]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 10 and all(r["file"].startswith("caption number") for r in results)


@pytest.mark.e2e
def test_pretrain_script_chains_dvae_codes_and_pretraining(prepared, tmp_path):
    """scripts/pretrain.sh: dVAE -> codes stored with the data -> pre-training with DIR; a rerun resumes each
    stage (nothing is trained or encoded again)."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    args = [data, tmp_path / "out", ROOT / "config" / "pretrain_tiny.yaml", ROOT / "config" / "dvae_tiny.yaml", "--",
            "loss.dir=1.0", "dvae.codebook_size=16", "train.max_steps=2"]
    first = script("pretrain.sh", *args)
    assert "codes of" in first and (data / "image_codes" / "meta.json").is_file()
    config = (tmp_path / "out" / "pretrain" / "config.yaml").read_text()
    assert str(tmp_path / "out" / "dvae") in config  # the run names the dVAE its codes came from
    again = script("pretrain.sh", *args)
    assert again.count("the run is complete") == 2 and "up to date" in again
