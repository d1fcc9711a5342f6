"""VQA v2 data: the official normalisation and accuracy, the reader of the published files, preparation's answers."""
import json

import cv2
import numpy as np
import pytest

from src.data.answers import answer_vocabulary, normalize_answer, soft_scores, soft_target
from src.data.prepare import PrepareError, prepare
from src.data.records import open_prepared
from src.data.sources import Problem, Sample, read_source
from src.data.vqa import image_index, load_answers
from src.metrics.vqa import accuracy_table, majority_answers, majority_predictions, question_accuracy, vqa_accuracy
from tests.conftest import tiny_config, write_tone

QUIET = dict(log=lambda *a: None)


# ----------------------------------------------------------------------------------------------------------------------
# normalisation (the rules of the official vqaEval.py)
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, normal", [
    ("Two.", "2"), ("none", "0"), ("Ten", "10"),                   # number words, period at the end
    ("a dog", "dog"), ("The Red Car", "red car"), ("an apple", "apple"),  # articles, lower case
    ("black-and-white", "black and white"),                      # a mark between words becomes a space
    ("yes!", "yes"), ("hello, world", "hello world"),            # a mark next to a space goes
    ("1,000", "1000"),                                           # a comma between digits: every mark goes
    ("3.5", "3.5"), ("e.g", "eg"),                               # a period stays before a digit only
    ("dont", "don't"), ("isnt", "isn't"), ("its", "its"),        # contractions, as the script lists them
    ("  yes\n", "yes"), ("t-shirt", "t shirt"), ("(cat)", "cat"),
])
def test_normalisation_follows_the_official_rules(raw, normal):
    assert normalize_answer(raw) == normal


def test_vocabulary_soft_scores_and_targets():
    assert answer_vocabulary(["Yes", "yes", "no", "Two", "2", "2", "cat"], min_count=2) == ["2", "yes"]
    scores = soft_scores(["2", "two", "Two.", "3", "3", "4"] + ["2"] * 4)
    assert scores == {"2": 1.0, "3": pytest.approx(2 / 3), "4": pytest.approx(1 / 3)}
    ids, values = soft_target(["2"] * 7 + ["3", "3", "cat"], {"3": 0, "2": 1}, width=4)
    assert ids.tolist() == [0, 1, -1, -1]
    assert values.tolist() == pytest.approx([2 / 3, 1.0, 0.0, 0.0])


# ----------------------------------------------------------------------------------------------------------------------
# accuracy: min(1, matching others / 3) averaged over the ten leave-one-out subsets
# ----------------------------------------------------------------------------------------------------------------------
def test_accuracy_equals_hand_computed_values():
    yes8_no2 = ["yes"] * 8 + ["no"] * 2
    # "no": 8 subsets without a "yes" keep both "no" (2/3), 2 subsets without a "no" keep one (1/3)
    assert question_accuracy("no", yes8_no2) == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)
    assert question_accuracy("yes", yes8_no2) == 1.0
    # a single human gave it: 9 subsets keep that one answer (1/3), the subset without it has none
    assert question_accuracy("red", ["red"] + ["blue"] * 9) == pytest.approx(0.3)
    # disagreeing annotators are normalised: "two", "2" and "Two." are one answer given by three humans (the three
    # subsets without one of them keep two: 2/3)
    assert question_accuracy("2", ["two", "2", "Two."] + ["3"] * 7) == pytest.approx((3 * 2 / 3 + 7) / 10)
    assert question_accuracy("2", ["two"] + ["3"] * 9) == pytest.approx(0.3)
    assert question_accuracy("dog", ["A dog", "the dog.", "cat"] + ["cat"] * 7) == pytest.approx(
        (2 * 1 / 3 + 8 * 2 / 3) / 10)
    # unanimous answers are compared as written (after trimming), as the official script does
    assert question_accuracy(" yes\n", ["yes"] * 10) == 1.0
    assert question_accuracy("Yes", ["yes"] * 10) == 0.0
    scores = vqa_accuracy(["no", "red", "4"], [yes8_no2, ["red"] + ["blue"] * 9, ["4"] * 4 + ["5"] * 6])
    assert scores == pytest.approx([0.6, 0.3, 1.0])


def test_accuracy_per_answer_type_and_majority_baselines():
    table = accuracy_table(np.array([1.0, 0.0, 0.5, 0.3]), ["yes/no", "yes/no", "number", "other"])
    assert table["overall"] == pytest.approx(45.0) and table["yes/no"] == 50.0 and table["number"] == 50.0
    assert table["other"] == pytest.approx(30.0)
    assert table["questions"] == {"overall": 4, "yes/no": 2, "number": 1, "other": 1}
    majority = majority_answers(["Yes", "no", "yes", "2", "Two", "3", "cat"],
                                ["yes/no", "yes/no", "yes/no", "number", "number", "number", "other"])
    assert majority == {"overall": "2", "yes/no": "yes", "number": "2", "other": "cat"}
    assert majority_predictions(majority, ["yes/no", "other"], per_type=True) == ["yes", "cat"]
    assert majority_predictions(majority, ["yes/no", "other"], per_type=False) == ["2", "2"]
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        vqa_accuracy(["a", "b"], [["a"]])


# ----------------------------------------------------------------------------------------------------------------------
# the reader of the published files
# ----------------------------------------------------------------------------------------------------------------------
COLOURS = ["red", "blue", "green"]


def write_colour(path, colour, seed):
    """An image of one colour (the answer to "what colour is it?"), with noise."""
    bgr = {"red": (40, 40, 220), "blue": (220, 60, 40), "green": (60, 200, 60)}[colour]
    noise = np.random.default_rng(seed).integers(-30, 30, (40, 48, 3))
    cv2.imwrite(str(path), np.clip(np.array(bgr) + noise, 0, 255).astype(np.uint8))


def make_vqa(root, images=8, val_images=2, spoken=True):
    """A VQA v2-format set: per image a yes/no, a number and an "other" question with ten disagreeing answers each;
    COCO file names; spoken questions as tones. Returns {split: (questions, annotations)} paths and folders."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    out = {}
    for split, ids in (("train", range(images - val_images)), ("val", range(images - val_images, images))):
        questions, annotations = [], []
        for image_id in ids:
            colour = COLOURS[image_id % 3]
            write_colour(root / "images" / f"COCO_{split}2014_{image_id:012d}.jpg", colour, image_id)
            for k, (text, answers, kind) in enumerate([
                    (f"is it {colour}?", ["yes"] * 9 + ["no"], "yes/no"),
                    ("how many parts?", ["2"] * 6 + ["two"] * 3 + ["3"], "number"),
                    ("what colour is it?", [colour] * 7 + [f"the {colour}"] * 2 + ["grey"], "other")]):
                qid = image_id * 10 + k
                questions.append({"image_id": image_id, "question": text, "question_id": qid})
                annotations.append({"question_id": qid, "image_id": image_id, "answer_type": kind,
                                    "multiple_choice_answer": answers[0], "question_type": text.split()[0],
                                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                                for j, a in enumerate(answers)]})
                if spoken:
                    write_tone(root / "audio" / f"{qid}.wav", 200 + 30 * qid)
        q_path, a_path = root / f"questions_{split}.json", root / f"annotations_{split}.json"
        q_path.write_text(json.dumps({"questions": questions}))
        a_path.write_text(json.dumps({"annotations": annotations}))
        out[split] = (q_path, a_path)
    return out


def split_entries(entries):
    entries = list(entries)
    return [e for e in entries if isinstance(e, Sample)], [e for e in entries if isinstance(e, Problem)]


def test_reader_finds_images_answers_and_recordings(tmp_path):
    files = make_vqa(tmp_path)
    q, a = files["train"]
    samples, problems = split_entries(read_source(str(q), "vqa", image_dir=str(tmp_path / "images"),
                                                  audio_dir=str(tmp_path / "audio"), annotations=str(a)))
    assert not problems and len(samples) == 18
    s = samples[4]  # image 1, the number question
    assert s.id == "11" and s.text == "how many parts?" and s.image.endswith("COCO_train2014_000000000001.jpg")
    assert s.audio.endswith("audio/11.wav")
    assert s.attached["vqa"].answers == ["2"] * 6 + ["two"] * 3 + ["3"] and s.attached["vqa"].answer_type == "number"
    # a test split has no annotations: questions without answers
    samples, problems = split_entries(read_source(str(q), "vqa", image_dir=str(tmp_path / "images")))
    assert not problems and samples[0].attached["vqa"].answers == [] and samples[0].audio is None


def test_images_by_folder_number_or_manifest(tmp_path):
    (tmp_path / "f").mkdir()
    for name in ("COCO_val2014_000000000042.jpg", "7.png", "notes.txt", "000000000123.jpg"):
        (tmp_path / "f" / name).write_bytes(b"x")
    index = image_index(str(tmp_path / "f"))
    assert sorted(index) == [7, 42, 123] and index[42].endswith("COCO_val2014_000000000042.jpg")
    (tmp_path / "m.jsonl").write_text('{"image_id": 5, "image": "f/7.png"}\n')
    assert image_index(str(tmp_path / "m.jsonl")) == {5: str((tmp_path / "f" / "7.png").resolve())}
    (tmp_path / "bad.jsonl").write_text('{"image_id": "5", "image": "f/7.png"}\n')
    with pytest.raises(PrepareError, match="bad.jsonl:1"):
        image_index(str(tmp_path / "bad.jsonl"))


DELETE = object()
# case -> (edits: (file, JSON keys, new value or DELETE), where the error points: (file, entry), what it says)
ENTRY_DAMAGE = {
    "answers not a list": ([("a", ["annotations", 3, "answers"], "yes")], ("a", "annotations[3]"),
                           "'answers' must be a non-empty list"),
    "answer not a string": ([("a", ["annotations", 3, "answers", 2], {"answer": 2})], ("a", "annotations[3]"),
                            "answers[2] must be an object with an 'answer' string"),
    "unanswered question": ([("a", ["annotations", 3], DELETE)], ("q", "questions[3]"),
                            "no annotation has this question_id"),
    "question id not an integer": ([("q", ["questions", 3, "question_id"], "x")], ("q", "questions[3]"),
                                   "'question_id' must be an integer"),
    "unknown image": ([("q", ["questions", 3, "image_id"], 999), ("a", ["annotations", 3, "image_id"], 999)],
                      ("q", "questions[3]"), "no image for image_id 999"),
}


def _edit_json(path, keys, value):
    doc = json.loads(path.read_text())
    node = doc
    for key in keys[:-1]:
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    path.write_text(json.dumps(doc))


def _damage(files, case):
    """Damage the training split's files as `case` says; (where the error must point, what it must say)."""
    q, a = files["train"]
    if case == "invalid json":
        a.write_text(a.read_text()[:-40])
        return a, "invalid JSON"
    if case == "no list":
        q.write_text(json.dumps({"question": []}))
        return q, "a VQA questions file is an object with a 'questions' list"
    paths = {"q": q, "a": a}
    edits, (file, entry), reason = ENTRY_DAMAGE[case]
    for which, keys, value in edits:
        _edit_json(paths[which], keys, value)
    return f"{paths[file]}: {entry}", reason


DAMAGE = ["invalid json", "no list", *ENTRY_DAMAGE]


@pytest.mark.parametrize("case", DAMAGE)
def test_malformed_files_are_refused_naming_file_and_entry(tmp_path, case):
    files = make_vqa(tmp_path, spoken=False)
    where, reason = _damage(files, case)
    q, a = files["train"]
    with pytest.raises(PrepareError) as err:
        prepare(str(q), str(tmp_path / "out"), tiny_config().prepare, "vqa", image_dir=str(tmp_path / "images"),
                annotations=str(a), **QUIET)
    assert str(where) in str(err.value) and reason in str(err.value) and "nothing was written" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_malformed_entry_can_be_skipped_and_is_counted(tmp_path):
    files = make_vqa(tmp_path, spoken=False)
    _damage(files, "answers not a list")
    q, a = files["train"]
    meta = prepare(str(q), str(tmp_path / "out"), tiny_config("prepare.vqa.min_count=2").prepare, "vqa",
                   image_dir=str(tmp_path / "images"), annotations=str(a), on_error="skip", **QUIET)
    # both reported: the broken annotation, and its question, left without answers
    assert meta["counts"]["written"] == 17 and meta["counts"]["skipped"] == 2
    assert [p["reason"] for p in meta["skipped"]] == ["'answers' must be a non-empty list",
                                                      "no annotation has this question_id"]


# ----------------------------------------------------------------------------------------------------------------------
# preparation: shards, the answer vocabulary in meta.json, soft targets per row
# ----------------------------------------------------------------------------------------------------------------------
def prepare_vqa(root, cfg, **sizes):
    """make_vqa's set in `root`, prepared with spoken questions: ROOT/train, and ROOT/val --like it."""
    files = make_vqa(root, **sizes)
    common = dict(image_dir=str(root / "images"), audio_dir=str(root / "audio"), **QUIET)
    prepare(str(files["train"][0]), str(root / "train"), cfg, "vqa", annotations=str(files["train"][1]), **common)
    prepare(str(files["val"][0]), str(root / "val"), cfg, "vqa", split="val", annotations=str(files["val"][1]),
            like=str(root / "train"), **common)
    return root


@pytest.fixture(scope="module")
def vqa_prepared(tmp_path_factory):
    return prepare_vqa(tmp_path_factory.mktemp("vqa"), tiny_config("prepare.vqa.min_count=2").prepare)


def test_preparation_stores_vocabulary_and_soft_targets(vqa_prepared):
    train = open_prepared(vqa_prepared / "train")
    vocab = train.meta["vqa"]["answers"]
    # multiple-choice answers of 6 training images: yes x6, 2 x6, red / blue / green x2 each
    assert vocab == ["2", "yes", "blue", "green", "red"] and train.meta["vqa"]["min_count"] == 2
    answers = load_answers(train, "train")
    assert answers.question_ids.tolist()[:4] == [0, 1, 2, 10]
    assert answers.answer_types.tolist()[:3] == ["yes/no", "number", "other"]
    assert answers.answer_lists([1])[0] == ["2"] * 6 + ["two"] * 3 + ["3"]
    dense = answers.dense(np.array([0, 1, 2]), len(vocab))
    # "no" (1 human) and "3" and "grey" are not in the vocabulary; "two" counts as "2"
    assert dense[0].tolist() == pytest.approx([0, 1, 0, 0, 0])
    assert dense[1].tolist() == pytest.approx([1, 0, 0, 0, 0])
    assert dense[2].tolist() == pytest.approx([0, 0, 0, 0, 1])  # red: 7 + 2 "the red"
    assert train.meta["splits"]["train"]["modalities"] == {"text": 18, "image": 18, "audio": 18}
    val = open_prepared(vqa_prepared / "val")  # --like: the training vocabulary, whatever the val answers
    assert val.meta["vqa"]["answers"] == vocab and load_answers(val, "val").question_ids.tolist()[0] == 60
