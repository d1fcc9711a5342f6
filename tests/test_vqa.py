"""VQA: question forms per row, the answer head's loss by hand, a tiny fine-tuning run that learns and resumes
exactly, eval.py's accuracy table and submission files, export.py's graphs answering like the checkpoint, infer.py."""
import json

import mindspore as ms
import numpy as np
import pytest

import eval as eval_script
import export as export_script
import infer as infer_script
import train as train_script
from src.config import ConfigError, load_config
from src.data.records import open_prepared
from src.data.vqa import load_answers
from src.metrics.vqa import vqa_accuracy
from src.model.losses import soft_bce
from src.modality import AUDIO, IMAGE, TEXT
from src.tasks.vqa import AnswerHead, question_views
from src.tasks.vqa_eval import parse_forms
from tests.conftest import ROOT
from tests.test_vqa_data import prepare_vqa

VQA_TINY = str(ROOT / "config" / "vqa_tiny.yaml")


def test_question_views_show_the_image_and_a_question_form_the_row_has():
    present = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 1, 0]], bool)
    forms = ((TEXT, IMAGE), (IMAGE, AUDIO), (TEXT, IMAGE, AUDIO))
    seen = set()
    for seed in range(20):
        view, weight = question_views(present, forms, np.random.default_rng(seed))
        np.testing.assert_array_equal(weight, [1, 1, 1, 0, 0])  # no image, or no question: no loss
        np.testing.assert_array_equal(view[1], [1, 1, 0])
        np.testing.assert_array_equal(view[2], [0, 1, 1])
        assert view[0, IMAGE] == 1 and view[0].sum() >= 2
        seen.add(tuple(view[0]))
    assert len(seen) == 3  # every form is drawn


def test_question_forms_are_checked():
    assert parse_forms(["audio", "text+audio"], "vqa.inputs") == ("audio", "text+audio")
    with pytest.raises(ConfigError, match=r"vqa.inputs: unknown question forms \['image'\]"):
        parse_forms(["image"], "vqa.inputs")


def test_soft_bce_by_hand_and_the_head_starts_at_the_prior():
    logits = np.array([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]], np.float32)
    targets = np.array([[1.0, 0.0, 1 / 3], [0.0, 2 / 3, 0.0]], np.float32)
    weights = np.array([1.0, 0.0], np.float32)
    p = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
    by_hand = -(targets[0] * np.log(p) + (1 - targets[0]) * np.log(1 - p)).sum()
    got = soft_bce(ms.Tensor(logits), ms.Tensor(targets), ms.Tensor(weights)).asnumpy()
    assert got == pytest.approx(by_hand, rel=1e-5)
    head = AnswerHead(16, 8, 50, 1e-12)
    assert 1 / (1 + np.exp(-head.out.bias.asnumpy())) == pytest.approx(np.full(50, 1 / 50), rel=1e-5)


@pytest.fixture(scope="module")
def vqa_set(tmp_path_factory):
    """A tiny VQA v2-format set (10 training images, 3 questions each; 2 validation images), prepared with spoken
    questions."""
    return prepare_vqa(tmp_path_factory.mktemp("vqa_set"), load_config(VQA_TINY).prepare, images=12, val_images=2)


def log_of(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def vqa_run(vqa_set, tmp_path_factory):
    """12 epochs of 5 batches from scratch, no dropout (so that a resumed run in this process draws the same)."""
    run = tmp_path_factory.mktemp("vqa_run") / "run"
    assert train_script.main(["--config", VQA_TINY, "--set", f"data.path={vqa_set / 'train'}",
                              f"train.output_dir={run}", "train.epochs=12", "model.dropout=0.0",
                              "train.keep_checkpoints=0"]) == 0
    return run


def test_fine_tuning_lowers_the_loss_and_resumes_exactly(vqa_set, vqa_run, tmp_path):
    whole = log_of(vqa_run)
    assert [e["step"] for e in whole] == list(range(1, 61))
    assert np.mean([e["vqa"] for e in whole[-5:]]) < 0.3 * np.mean([e["vqa"] for e in whole[:5]])
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.yaml").write_text((vqa_run / "config.yaml").read_text())
    (cut / "step_00000030.ckpt").write_bytes((vqa_run / "step_00000030.ckpt").read_bytes())
    (cut / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in whole[:30]))
    assert train_script.main(["--config", VQA_TINY, "--set", f"data.path={vqa_set / 'train'}",
                              f"train.output_dir={cut}", "train.epochs=12", "model.dropout=0.0", "--resume"]) == 0
    resumed = log_of(cut)
    np.testing.assert_allclose([e["loss"] for e in resumed[30:]], [e["loss"] for e in whole[30:]], rtol=1e-5)


def test_eval_scores_every_question_form_beside_the_baselines(vqa_set, vqa_run, capsys):
    data = str(vqa_set / "val")
    assert eval_script.main(["--task", "vqa", "--ckpt", str(vqa_run), "--data", data, "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "| text question + image |" in out and "| majority answer |" in out
    report = json.loads((vqa_run / "eval_vqa_val.json").read_text())
    assert list(report["forms"]) == ["text", "audio", "text+audio"] and report["items"] == 6
    for form, r in report["forms"].items():
        answers = json.loads(open(r["answers_file"]).read())
        assert [a["question_id"] for a in answers] == [100, 101, 102, 110, 111, 112]
        human = load_answers(open_prepared(data), "val")
        expected = 100 * vqa_accuracy([a["answer"] for a in answers], human.answer_lists()).mean()
        assert r["overall"] == pytest.approx(expected)
        assert r["questions"] == {"overall": 6, "yes/no": 2, "number": 2, "other": 2}
    majority = report["baselines"]["majority answer"]
    # the training multiple-choice answers: "yes" x10, "2" x10, colours; "2" wins the tie alphabetically, and scores
    # on the number questions only: 6 "2" + 3 "two" of ten humans
    assert majority["answer"] == "2" and majority["number"] == 100.0 and majority["overall"] == pytest.approx(100 / 3)
    per_type = report["baselines"]["majority answer per type"]
    assert per_type["yes/no"] == 100.0 and per_type["number"] == 100.0
    assert report["baselines"]["vocabulary ceiling"]["overall"] == 100.0


@pytest.mark.e2e
def test_mindir_answers_equal_checkpoint_answers(vqa_set, vqa_run, tmp_path, capsys):
    data = ["--data", str(vqa_set / "val"), "--split", "val"]
    out = tmp_path / "exports" / "vqa"
    assert export_script.main(["--task", "vqa", "--ckpt", str(vqa_run), "--out", str(out)]) == 0
    manifest = json.loads((out / "bundle.json").read_text())
    assert sorted(manifest["graphs"]) == ["answer_audio", "answer_text", "answer_text_audio"]
    assert all(g["verified_max_abs_diff"] < 1e-4 for g in manifest["graphs"].values())
    reports = {}
    for name, source in (("ckpt", ["--ckpt", str(vqa_run)]), ("mindir", ["--mindir", str(out)])):
        path = tmp_path / f"{name}.json"
        assert eval_script.main(["--task", "vqa", *source, *data, "--out", str(path)]) == 0
        reports[name] = json.loads(path.read_text())
    for form in ("text", "audio", "text+audio"):
        a, b = (json.loads(open(reports[k]["forms"][form]["answers_file"]).read()) for k in ("ckpt", "mindir"))
        assert a == b and reports["ckpt"]["forms"][form]["overall"] == reports["mindir"]["forms"][form]["overall"]

    image = str(vqa_set / "images" / "COCO_val2014_000000000010.jpg")
    answers = {}
    for name, source in (("ckpt", ["--ckpt", str(vqa_run)]), ("mindir", ["--mindir", str(out)])):
        capsys.readouterr()
        assert infer_script.main([*source, "--image", image, "--question", "what colour is it?",
                                  "--audio", str(vqa_set / "audio" / "102.wav")]) == 0
        answers[name] = capsys.readouterr().out.splitlines()
    assert answers["ckpt"][0] == answers["mindir"][0] and len(answers["ckpt"]) == 6  # the answer, then the top 5
    from src.api import load  # the API, on the bundle: the same answer, for rows in a batch
    recording = str(vqa_set / "audio" / "102.wav")
    assert load(out).answer([image, image], ["what colour is it?"] * 2, [recording] * 2) == [answers["ckpt"][0]] * 2
    assert infer_script.main(["--ckpt", str(vqa_run), "--image", image]) == 2
    assert "VQA reads --image and a question" in capsys.readouterr().err
