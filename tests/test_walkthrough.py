"""docs/own_data.md end to end on a generated Karpathy set, as a user runs it: prepare every split --like a pre-trained
run, fine-tune retrieval with the script, evaluate in the papers' form, fine-tune captioning, caption a folder of
unseen images, index the folder and search it with a caption, export. The default fine-tuning recipes run, shortened,
from a tiny pre-trained run."""
import json
import os
import subprocess
import sys

import cv2

import export as export_script
import infer as infer_script
from tests.conftest import ROOT
from tests.formats import make_karpathy, picture

# the default fine-tuning recipes, shortened: one epoch of batches the tiny set fills, a short warm start
SHORTER = ["train.epochs=1", "data.batch_size=8", "loss.warm_start_epochs=2", "eval.batch_size=8",
           "generate.batch_size=8", "generate.max_len=8"]


def script(name, *args):
    """A script of scripts/ as the docs run it; its output, after checking it succeeded."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / name), *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
    return done.stdout


def test_own_data_walkthrough(pretrained_run, tmp_path, capsys):
    pretrained = pretrained_run  # stands for the demo's (or your) pre-training run
    source = make_karpathy(tmp_path / "my data", {"train": 8, "restval": 2, "val": 2, "test": 4}, captions=2)
    data = tmp_path / "my data" / "prepared"

    script("prepare_data.sh", source, data, "--format", "karpathy", "--like", pretrained)
    meta = json.loads((data / "meta.json").read_text())
    assert {s: v["count"] for s, v in meta["splits"].items()} == {"train": 20, "val": 4, "test": 8}

    retrieval = tmp_path / "runs" / "retrieval"  # the default recipe (config/retrieval_finetune.yaml), shorter
    script("run_standalone_train_retrieval.sh", pretrained, data, retrieval, *SHORTER)
    assert "the run is complete" in script("run_standalone_train_retrieval.sh", pretrained, data, retrieval,
                                           *SHORTER)  # a rerun resumes it, nothing else
    printed = script("run_standalone_eval_retrieval.sh", retrieval, data, "--split", "test")
    report = json.loads((retrieval / "eval_retrieval_test.json").read_text())
    assert list(report["directions"]) == ["image->text", "text->image"]  # what an image-text set supports
    protocol = report["protocol"]["all"]
    assert (protocol["images"], protocol["texts"]) == (4, 8) and 0 < protocol["RSUM"] <= 600
    assert "RSUM" in printed and "frozen R@1" in printed  # the baseline fitted on the run's training data

    caption = tmp_path / "runs" / "caption"
    script("train_caption.sh", pretrained, data, caption, *SHORTER)  # config/caption_finetune.yaml, shorter

    photos = tmp_path / "new photos"
    photos.mkdir()
    for i in range(12):
        cv2.imwrite(str(photos / f"p{i:02d}.jpg"), picture(40 + i))
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.png").write_bytes(b"not a png")
    captions = tmp_path / "captions.jsonl"
    assert infer_script.main(["--ckpt", str(caption), "--image", str(photos), "--out", str(captions)]) == 0
    lines = [json.loads(line) for line in captions.read_text().splitlines()]
    assert len(lines) == 13 and [line["file"] for line in lines][-1].endswith("p11.jpg")
    assert "cannot decode image" in lines[0]["error"] and all(isinstance(x.get("text"), str) for x in lines[1:])

    index = tmp_path / "photos.index"
    assert infer_script.main(["--ckpt", str(retrieval), "--gallery", str(photos), "--index", str(index)]) == 0
    capsys.readouterr()
    assert infer_script.main(["--index", str(index), "--text", "a red square on grey"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rank"] for r in results] == list(range(1, 11))
    assert len({r["file"] for r in results}) == 10 and all(r["file"].endswith(".jpg") for r in results)
    # eval.rerank_k 16 covers the 12 photos: all are reranked, best fused score (cross-encoder + 20 x cosine) first
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)

    (tmp_path / "queries.txt").write_text("a red square on grey\n\nthe stripe is blue\n")
    assert infer_script.main(["--index", str(index), "--queries", str(tmp_path / "queries.txt"), "--top", "3"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["query"], r["rank"]) for r in results] == [(q, k) for q in ("a red square on grey",
                                                                           "the stripe is blue") for k in (1, 2, 3)]
    (tmp_path / "captions.txt").write_text("".join(f"caption number {i}\n" for i in range(12)))
    assert infer_script.main(["--ckpt", str(retrieval), "--gallery", str(tmp_path / "captions.txt"),
                              "--gallery-modality", "text", "--index", str(tmp_path / "captions.index")]) == 0
    capsys.readouterr()
    assert infer_script.main(["--index", str(tmp_path / "captions.index"), "--image", str(photos / "p03.jpg")]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 10 and all(r["file"].startswith("caption number") for r in results)

    exported = tmp_path / "exports" / "retrieval"
    assert export_script.main(["--task", "retrieval", "--ckpt", str(retrieval), "--out", str(exported)]) == 0
    assert (tmp_path / "exports" / "retrieval.json").is_file()


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
