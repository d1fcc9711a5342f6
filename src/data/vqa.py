"""VQA v2 as published -> samples, and the answers stored beside the prepared shards.

    questions JSON    {"questions": [{"image_id", "question", "question_id"}, ...]}
    annotations JSON  {"annotations": [{"question_id", "image_id", "answers": [{"answer", "answer_confidence",
                      "answer_id"}, ...], "multiple_choice_answer", "answer_type"}, ...]}   (absent for test splits)

Images are found by image_id: in a folder, by the number that ends each file name (COCO_val2014_000000000042.jpg,
000000000042.jpg and 42.png are image 42), or through a JSON Lines manifest of {"image_id", "image"} (paths relative
to it). A spoken question is AUDIO_DIR/<question_id>.<wav|flac|ogg|mp3|npz>. A sample is one question: its text is
the question, its image the picture, its audio the recording, its id the question_id.

Preparation stores, per split, PREPARED/vqa/<split>.npz (row i = the split's sample with index i): question ids,
answer types, the human answers as written and the soft targets over the answer vocabulary (ids and min(1, n / 3)
scores); meta.json's "vqa" holds the vocabulary. Both are an attachment (src/data/attachments.py) with its settings in
`prepare.vqa`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from src.data.answers import answer_vocabulary, soft_target
from src.data.attachments import Attachment, register_attachment
from src.data.errors import PrepareError
from src.data.records import DatasetError, PreparedData
from src.data.sources import Entry, Problem, Sample, SourceFormat, json_document, json_lines, register_format

DIRECTORY = "vqa"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".npz")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".npz")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


@dataclass
class VQAPrepareConfig:
    """How a VQA source's answers are prepared: the answer vocabulary (the answers are stored beside the shards)."""
    min_count: int = 9            # answers given at least this often (as multiple_choice_answer) form the answer
    #                               vocabulary (9 over VQA v2 train+val gives the usual 3,129)


@dataclass
class Question:
    """What a VQA sample carries beside its inputs (the question text is the sample's text)."""
    question_id: int
    image_id: int
    answers: List[str] = field(default_factory=list)  # the human answers as written (none in a test split)
    answer_type: str = ""
    multiple_choice_answer: str = ""


def read_vqa(path: str, split: str = "train", image_dir: Optional[str] = None, audio_dir: Optional[str] = None,
             annotations: Optional[str] = None, **_) -> Iterator[Entry]:
    """A sample per question of the questions file `path` (answers from `annotations`, when given), or a Problem
    naming the file and the entry."""
    questions = _load(path, "questions")
    if isinstance(questions, Problem):
        yield questions
        return
    answers: Dict[int, dict] = {}
    if annotations:
        entries = _load(annotations, "annotations")
        if isinstance(entries, Problem):
            yield entries
            return
        for i, ann in enumerate(entries):
            checked = _check_annotation(ann, f"{annotations}: annotations[{i}]")
            if isinstance(checked, Problem):
                yield checked
            else:
                answers[ann["question_id"]] = ann
    images = image_index(image_dir or str(Path(path).resolve().parent))
    for i, q in enumerate(questions):
        yield _question_sample(q, f"{path}: questions[{i}]", answers if annotations else None, images, audio_dir,
                               split)


def _load(path: str, key: str):
    """The list under `key` of a JSON file, or a Problem."""
    doc = json_document(path)
    if isinstance(doc, Problem):
        return doc
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
        return Problem(path, None, f"a VQA {key} file is an object with a '{key}' list")
    return doc[key]


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_annotation(ann, where: str) -> Optional[Problem]:
    if not isinstance(ann, dict):
        return Problem(where, None, f"an annotation must be an object, got {type(ann).__name__}")
    qid = ann.get("question_id")
    if not _is_int(qid):
        return Problem(where, None, f"'question_id' must be an integer, got {qid!r}")
    given = ann.get("answers")
    if not isinstance(given, list) or not given:
        return Problem(where, str(qid), "'answers' must be a non-empty list")
    for k, a in enumerate(given):
        if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
            return Problem(where, str(qid), f"answers[{k}] must be an object with an 'answer' string")
    for key in ("answer_type", "multiple_choice_answer"):
        if key in ann and not isinstance(ann[key], str):
            return Problem(where, str(qid), f"'{key}' must be a string, got {type(ann[key]).__name__}")
    return None


def _question_sample(q, where: str, answers: Optional[Dict[int, dict]], images: Dict[int, str],
                     audio_dir: Optional[str], split: str) -> Entry:
    if not isinstance(q, dict):
        return Problem(where, None, f"a question must be an object, got {type(q).__name__}")
    qid, image_id, text = q.get("question_id"), q.get("image_id"), q.get("question")
    if not _is_int(qid):
        return Problem(where, None, f"'question_id' must be an integer, got {qid!r}")
    if not _is_int(image_id):
        return Problem(where, str(qid), f"'image_id' must be an integer, got {image_id!r}")
    if not isinstance(text, str):
        return Problem(where, str(qid), f"'question' must be a string, got {type(text).__name__}")
    question = Question(qid, image_id)
    if answers is not None:
        ann = answers.get(qid)
        if ann is None:
            return Problem(where, str(qid), "no annotation has this question_id")
        if ann.get("image_id", image_id) != image_id:
            return Problem(where, str(qid), f"the annotation's image_id {ann['image_id']} is not the question's "
                                            f"{image_id}")
        question.answers = [a["answer"] for a in ann["answers"]]
        question.answer_type = ann.get("answer_type", "")
        question.multiple_choice_answer = ann.get("multiple_choice_answer", "")
    image = images.get(image_id)
    if image is None:
        return Problem(where, str(qid), f"no image for image_id {image_id}")
    audio = _find_audio(audio_dir, qid) if audio_dir else None
    if audio_dir and audio is None:
        return Problem(where, str(qid), f"no recording {qid}.<{'|'.join(e[1:] for e in AUDIO_EXTENSIONS)}> in "
                                        f"{audio_dir}")
    return Sample(id=str(qid), where=where, text=text, image=image, audio=audio, split=split,
                  attached={DIRECTORY: question})


def image_index(images: str) -> Dict[int, str]:
    """image_id -> absolute path: every image file of a folder by the number ending its name, or the entries of a
    JSON Lines manifest {"image_id", "image"}."""
    source = Path(images).resolve()
    if source.is_file():
        index = {}
        for item in json_lines(str(source)):
            if isinstance(item, Problem):
                raise PrepareError(item.message())
            where, _, row = item
            if not _is_int(row.get("image_id")) or not isinstance(row.get("image"), str):
                raise PrepareError(f"{where}: an image manifest line is {{\"image_id\": int, \"image\": path}}")
            index[row["image_id"]] = str((source.parent / row["image"]).resolve())
        return index
    if not source.is_dir():
        raise FileNotFoundError(f"image folder or manifest not found: {images}")
    index = {}
    for f in sorted(source.iterdir()):
        m = _TRAILING_NUMBER.search(f.stem)
        if m and f.suffix.lower() in IMAGE_EXTENSIONS:
            index.setdefault(int(m.group(1)), str(f))
    return index


def _find_audio(folder: str, question_id: int) -> Optional[str]:
    for ext in AUDIO_EXTENSIONS:
        path = Path(folder).resolve() / f"{question_id}{ext}"
        if path.is_file():
            return str(path)
    return None


register_format("vqa", SourceFormat(read_vqa, flags={
    "--annotations": dict(dest="annotations", default=None, help="the annotations JSON of the questions (none for a "
                                                                 "test split)")}, input_options=("annotations",)))


# ----------------------------------------------------------------------------------------------------------------------
# The answers stored with the prepared data
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class Answers:
    """A prepared split's VQA answers, row i for the sample with index i."""
    question_ids: np.ndarray      # [n] int64
    answer_types: np.ndarray      # [n] str ("" when unknown)
    human: np.ndarray             # [n, k] str: the human answers as written ("" pads; none in a test split)
    multiple_choice: np.ndarray   # [n] str: the annotation's multiple_choice_answer (the baselines count these)
    target_ids: np.ndarray        # [n, t] int32 answer ids (-1 pads)
    target_scores: np.ndarray     # [n, t] float32 soft scores

    def answer_lists(self, rows: Optional[np.ndarray] = None) -> List[List[str]]:
        rows = np.arange(len(self.question_ids)) if rows is None else rows
        return [[a for a in self.human[i] if a] for i in rows]

    def dense(self, rows: np.ndarray, num_answers: int) -> np.ndarray:
        """[len(rows), num_answers] float32 soft targets of those rows."""
        out = np.zeros((len(rows), num_answers), np.float32)
        ids, scores = self.target_ids[rows], self.target_scores[rows]
        r, c = np.nonzero(ids >= 0)
        out[r, ids[r, c]] = scores[r, c]
        return out


def vocabulary_of(questions: Dict[str, List[Question]], min_count: int) -> List[str]:
    """The answer vocabulary from the training questions' multiple-choice answers (all splits' when there is no
    training split)."""
    asked = {sp: [q for q in qs if q.multiple_choice_answer] for sp, qs in questions.items()}
    train = asked.get("train") or [q for qs in asked.values() for q in qs]
    return answer_vocabulary([q.multiple_choice_answer for q in train], min_count)


def prepare_answers(root: Path, questions: Dict[str, List[Question]], settings: VQAPrepareConfig,
                    reference: Optional[dict]) -> dict:
    """The attachment's write: the answer vocabulary (the reference's, or from the training questions), then
    write_answers."""
    vocabulary = reference["answers"] if reference else vocabulary_of(questions, settings.min_count)
    if not vocabulary:
        raise PrepareError(f"no answer is given at least prepare.vqa.min_count={settings.min_count} times: the "
                           "answer vocabulary is empty")
    min_count = reference.get("min_count", settings.min_count) if reference else settings.min_count
    return write_answers(root, questions, vocabulary, min_count)


def write_answers(root: Path, questions: Dict[str, List[Question]], vocabulary: List[str], min_count: int) -> dict:
    """Write PREPARED/vqa/<split>.npz for each split's questions (in index order) and return meta.json's "vqa"."""
    ids = {a: i for i, a in enumerate(vocabulary)}
    (root / DIRECTORY).mkdir(parents=True, exist_ok=True)
    coverage = {}
    for split, qs in questions.items():
        width = max([len(q.answers) for q in qs] + [1])
        human = np.array([q.answers + [""] * (width - len(q.answers)) for q in qs], dtype=str).reshape(len(qs), width)
        targets = [soft_target(q.answers, ids, width) for q in qs]
        target_ids = np.stack([t[0] for t in targets]).astype(np.int32)
        target_scores = np.stack([t[1] for t in targets]).astype(np.float32)
        np.savez(root / DIRECTORY / f"{split}.npz", question_ids=np.array([q.question_id for q in qs], np.int64),
                 answer_types=np.array([q.answer_type for q in qs], dtype=str), human=human,
                 multiple_choice=np.array([q.multiple_choice_answer for q in qs], dtype=str),
                 target_ids=target_ids, target_scores=target_scores)
        answered = np.array([bool(q.answers) for q in qs])
        # the mean soft score of each answered question's best in-vocabulary answer: what a classifier can reach
        coverage[split] = round(float(target_scores[answered].max(1).mean()), 4) if answered.any() else 0.0
    return {"answers": vocabulary, "min_count": min_count, "files": {s: f"{DIRECTORY}/{s}.npz" for s in questions},
            "reachable_score": coverage}


def load_answers(data: PreparedData, split: str) -> Answers:
    """The stored answers of `split`, checked against its sample count."""
    info = data.meta.get("vqa")
    if not info:
        raise DatasetError(f"{data.root} holds no VQA questions: prepare a VQA set with --format vqa")
    if split not in info["files"]:
        raise DatasetError(f"{data.root}: no VQA answers for split '{split}'")
    with np.load(data.root / info["files"][split]) as f:
        answers = Answers(f["question_ids"], f["answer_types"], f["human"], f["multiple_choice"], f["target_ids"],
                          f["target_scores"])
    if len(answers.question_ids) != data.count(split):
        raise DatasetError(f"{data.root / info['files'][split]} has {len(answers.question_ids)} rows for "
                           f"{data.count(split)} samples: prepare the data again")
    return answers


def answer_vocabulary_of(data: PreparedData) -> List[str]:
    if not data.meta.get("vqa"):
        raise DatasetError(f"{data.root} holds no VQA questions: prepare a VQA set with --format vqa")
    return list(data.meta["vqa"]["answers"])


register_attachment(DIRECTORY, Attachment(prepare_answers, VQAPrepareConfig),
                    renamed={"prepare.answer_min_count": "prepare.vqa.min_count"})
