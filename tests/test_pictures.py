"""scripts/show_losses.py --png (every loss against the step) and scripts/show_results.py (each task's result beside
its baselines, as a Markdown table and a bar chart), on generated training logs and on evaluation JSONs written by
eval.py's own writer in the structure each task's evaluation reports."""
from __future__ import annotations

import argparse
import importlib.util
import json

import cv2
import numpy as np

from src.metrics.classification import mean_average_precision
from src.metrics.image import code_usage
from src.metrics.retrieval import chance_recall, recall_summary
from src.metrics.text import text_metrics
from src.metrics.vqa import accuracy_table, vqa_accuracy
from tests.conftest import ROOT


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"pictures_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PRETRAIN_LOSSES = ("mlm", "mvfr", "mrc", "mafr", "mam_nce", "match", "dtr", "dir")


def write_log(path, steps: int = 40, seed: int = 0, names=PRETRAIN_LOSSES) -> None:
    """train_log.jsonl as src/train/trainer.py's TrainLog writes it: one JSON line per optimizer step."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for step in range(1, steps + 1):
            losses = {n: float(3 + i + 2 * np.exp(-step / 15) + rng.normal(0, 0.2)) for i, n in enumerate(names)}
            f.write(json.dumps({"step": step, "epoch": 0, "loss": sum(losses.values()), **losses, "lr": 1e-4,
                                "loss_scale": 1.0, "grad_norm": 1.5, "overflow": False, "step_time": 0.5,
                                "samples_per_s": 32.0}) + "\n")


def test_show_losses_draws_every_loss_and_keeps_its_summary(tmp_path, capsys):
    show_losses = script("show_losses")
    first, second = tmp_path / "a" / "train_log.jsonl", tmp_path / "b" / "train_log.jsonl"
    write_log(first, seed=0)
    write_log(second, seed=1)
    assert show_losses.main([str(first), "--png", str(tmp_path / "a.png"), "--window", "5"]) == 0
    out = capsys.readouterr().out
    assert "40 steps" in out and "mean of steps 1-5 vs the last 5" in out and " mlm " in out  # the summary stays
    picture = cv2.imread(str(tmp_path / "a.png"))
    width, height = (round(x * show_losses.DPI) for x in show_losses.figure_inches(1 + len(PRETRAIN_LOSSES)))
    assert picture is not None and picture.shape == (height, width, 3) and (width, height) == (1440, 830)
    assert picture.std() > 10  # not a blank canvas
    assert f"({width}x{height})" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a.png", "b"]  # no partial file left

    show_losses.main([str(second), "--png", str(tmp_path / "b.png"), "--window", "5"])
    other = cv2.imread(str(tmp_path / "b.png"))
    assert other.shape == picture.shape and not np.array_equal(other, picture)  # other losses, another picture

    # two runs drawn together, and a task with one loss (the total and its own panel)
    write_log(tmp_path / "c" / "train_log.jsonl", names=("caption",))
    assert show_losses.main([str(first), str(second), "--png", str(tmp_path / "both.png")]) == 0
    assert cv2.imread(str(tmp_path / "both.png")).shape == picture.shape
    assert show_losses.main([str(tmp_path / "c" / "train_log.jsonl"), "--png", str(tmp_path / "c.png")]) == 0
    assert cv2.imread(str(tmp_path / "c.png")).shape == (round(show_losses.figure_inches(2)[1] * 100),
                                                          round(show_losses.figure_inches(2)[0] * 100), 3)


def write_eval(run_dir, stage: str, task: str, fields: dict) -> None:
    """An evaluation JSON where and as eval.py writes it: its report beside the checkpoint of runs/<stage>."""
    import eval as eval_py
    report = {"task": task, "checkpoint": str(run_dir / stage / "step_20.ckpt"), "data": "data/demo/prepared",
              "split": "val", **fields}
    (run_dir / stage).mkdir(parents=True, exist_ok=True)
    eval_py.write_report(argparse.Namespace(task=task, out=None), report)


def demo_reports(run_dir) -> None:
    """Every evaluation of the demo but text-to-image, in the structure each task's evaluate_run reports."""
    from src.tasks.classify import chance_map
    rng = np.random.default_rng(0)
    # retrieval (src/tasks/retrieval_eval.py): per direction the two-stage and first-stage recall, the frozen-feature
    # heads' (baseline) and chance
    directions = {}
    for name, ranks, base in (("image->text", [1, 2, 30, 4], [1, 20, 30, 40]), ("text->audio", [1, 1, 5, 50],
                                                                               [2, 2, 2, 2])):
        directions[name] = {"queries": 4, "candidates": 60, "rerank_k": 3,
                            "two_stage": recall_summary(np.array(ranks)),
                            "first_stage": recall_summary(np.array(ranks)),
                            "chance": chance_recall(60, np.ones(4, np.int64)), "seconds": 1.0,
                            "baseline": recall_summary(np.array(base))}
    write_eval(run_dir, "retrieval", "retrieval", {"items": 8, "embedding_seconds": 0.5, "directions": directions,
                                                   "seconds": 2.0})
    # probe (src/tasks/classify.py): mAP per input set beside chance
    labels = (rng.random((12, 3)) > 0.5).astype(np.float32)
    inputs = {name: {**mean_average_precision(labels + rng.normal(0, s, labels.shape), labels),
                     "chance_mAP": chance_map(labels > 0)} for name, s in (("text", 0.3), ("text+image+audio", 0.1))}
    write_eval(run_dir, "pretrain", "probe", {"items": 12, "train_split": "train", "train_items": 20,
                                              "inputs": inputs})
    # text generation (src/tasks/caption_eval.py): metrics beside the nearest training caption's
    refs = [["a red apple"], ["a blue sky"], ["a green tree"]]
    for task, inputs_of, predictions in (("caption", "image", ["a red apple", "a red sky", "a tree"]),
                                         ("asr", "audio", ["red", "blue", "green"])):
        metrics = text_metrics(predictions, refs, ["en"] * 3)
        near = text_metrics(["a blue sky", "a red apple", "a green tree"], refs, ["en"] * 3)
        write_eval(run_dir, "caption", task, {
            "inputs": inputs_of, "strategy": "beam", "items": 3, "seconds": 1.0, "pieces_per_second": 10.0,
            "metrics": metrics, "by_lang": {"en": dict(metrics, items=3)}, "audio_cut": 0, "unique_share": 100.0,
            "nearest_neighbour": dict(near, unique_share=100.0),
            "predictions": [{"id": str(i), "prediction": p, "references": r}
                            for i, (p, r) in enumerate(zip(predictions, refs))]})
    # VQA (src/tasks/vqa_eval.py): accuracy per question form beside the majority answers
    human = [["yes"] * 10, ["2"] * 10, ["smileys"] * 10, ["no"] * 10]
    types = ["yes/no", "number", "other", "yes/no"]
    forms = {form: {"questions": 4, "answers_file": f"vqa_answers_val_{form}.json",
                    **accuracy_table(vqa_accuracy(answers, human), types)}
             for form, answers in (("text", ["yes", "2", "smileys", "yes"]), ("audio", ["yes", "3", "flags", "no"]))}
    baselines = {"majority answer": {**accuracy_table(vqa_accuracy(["yes"] * 4, human), types), "answer": "yes"},
                 "majority answer per type": {**accuracy_table(vqa_accuracy(["yes", "2", "flags", "yes"], human),
                                                               types), "answer": {"overall": "yes"}},
                 "vocabulary ceiling": accuracy_table(vqa_accuracy(["yes", "2", "smileys", "no"], human), types)}
    write_eval(run_dir, "vqa", "vqa", {"items": 4, "answers": 5, "scored": True, "forms": forms,
                                       "baselines": baselines})
    # dVAE (src/tasks/dvae.py): PSNR beside the per-image mean colour
    write_eval(run_dir, "dvae", "dvae", {"items": 6, "psnr": 19.123, "baseline_psnr": 11.877, "psnr_gain": 7.246,
                                         **code_usage(rng.integers(0, 16, (6, 2, 2)), 16)})


def test_show_results_table_and_chart_from_the_evaluations_json(tmp_path, capsys):
    show_results = script("show_results")
    run = tmp_path / "demo"
    demo_reports(run)
    capsys.readouterr()  # eval.py's writer names what it wrote
    assert (run / "caption" / "eval_asr_val.json").is_file() and (run / "pretrain" / "eval_probe_val.json").is_file()
    out_png, out_json = run / "results.png", run / "results.json"
    assert show_results.main([str(run), "--png", str(out_png), "--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0] == "| task | metric | measured | baseline |"
    rows = {line.split(" | ")[0][2:]: line for line in table if line.startswith("| ") and " | " in line}
    # image->text R@10: ranks 1, 2, 30, 4 -> 75.0; the frozen heads' 1, 20, 30, 40 -> 25.0; chance 1 of 60
    assert rows["retrieval image->text"] == ("| retrieval image->text | R@10 (%) | **75.0** | frozen-feature heads "
                                             "25.0; chance 16.7 |")
    assert "| retrieval text->audio | R@10 (%) | 75.0 | frozen-feature heads 100.0; chance 16.7 |" in table
    assert rows["linear probe text+image+audio"].startswith("| linear probe text+image+audio | mAP (%) | **")
    assert "| dVAE argmax codes | PSNR (dB) | **19.12** | per-image mean colour 11.88 |" in table
    assert rows["VQA text question"] == ("| VQA text question | accuracy (%) | **75.00** | majority answer per type "
                                         "50.00; majority answer 25.00 |")
    assert "vocabulary ceiling" not in captured.out  # a ceiling, not a baseline
    caption = json.loads((run / "caption" / "eval_caption_val.json").read_text())
    assert f"| captioning (image) | CIDEr-D | **{caption['metrics']['CIDEr']:.3f}** | nearest training caption " \
           f"{caption['nearest_neighbour']['CIDEr']:.3f} |" in table
    asr = json.loads((run / "caption" / "eval_asr_val.json").read_text())
    assert f"| speech recognition (audio) | WER (%) | {asr['metrics']['WER']:.1f} | nearest training caption " \
           f"{asr['nearest_neighbour']['WER']:.1f} |" in table  # lower is better: 66.7 is no better than 0.0
    # text-to-image has no JSON: left out of the table and named
    assert "text-to-image" not in captured.out
    assert "eval_t2i_val.json" in captured.err and "text-to-image left out" in captured.err
    assert "caption_ia" in captured.err

    picture = cv2.imread(str(out_png))
    panels = json.loads(out_json.read_text())["panels"]
    assert [p["task"] for p in panels] == ["retrieval", "linear probe", "", "", "VQA", "dVAE"]
    width, height = (round(x * show_results.DPI) for x in show_results.figure_inches(panels))
    assert picture is not None and picture.shape == (height, width, 3) and (width, height) == (1280, 1010)
    assert json.loads(out_json.read_text())["missing"] == ["caption_ia", "t2i"]

    # another measurement, another chart; --recall picks retrieval's R@K
    assert show_results.main([str(run), "--recall", "1", "--png", str(tmp_path / "r1.png")]) == 0
    assert "| retrieval image->text | R@1 (%) | 25.0 | frozen-feature heads 25.0;" in capsys.readouterr().out
    assert not np.array_equal(cv2.imread(str(tmp_path / "r1.png")), picture)


def test_show_results_without_evaluations_says_so(tmp_path, capsys):
    show_results = script("show_results")
    assert show_results.main([str(tmp_path)]) == 2
    assert "no evaluation results" in capsys.readouterr().err
    (tmp_path / "dvae").mkdir()
    (tmp_path / "dvae" / "eval_dvae_val.json").write_text(json.dumps({"task": "dvae", "items": 3}))
    assert show_results.main([str(tmp_path), "--png", str(tmp_path / "r.png")]) == 2
    assert "dvae: the results have no 'psnr'" in capsys.readouterr().err and not (tmp_path / "r.png").exists()
