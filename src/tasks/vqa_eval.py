"""VQA evaluation and inference: answer a split in each question form (text, spoken, both) and score it with the
official VQA accuracy, overall and per answer type, beside the majority-answer baselines and the ceiling of the
answer vocabulary; write the answers in the submission format; answer one question about one image (infer.py).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from src.config import Config, ConfigError
from src.data.errors import FeatureError
from src.data.records import PreparedData, write_json_atomic
from src.data.vqa import Answers, answer_vocabulary_of, load_answers
from src.infer.file_inputs import files_inputs
from src.infer.items import load_items, run_batched
from src.metrics.tables import markdown_table
from src.metrics.vqa import accuracy_table, majority_answers, majority_predictions, vqa_accuracy
from src.modality import MODALITIES

# a question form -> the modalities the encoder is shown (the image always)
FORMS = {"text": ("text", "image"), "audio": ("image", "audio"), "text+audio": ("text", "image", "audio")}
COLUMNS = ("overall", "yes/no", "number", "other")


def parse_forms(names: Sequence[str], where: str) -> Tuple[str, ...]:
    if not names:
        raise ConfigError(f"{where} is empty: name at least one question form ({', '.join(FORMS)})")
    unknown = [n for n in names if n not in FORMS]
    if unknown:
        raise ConfigError(f"{where}: unknown question forms {unknown} (known: {', '.join(FORMS)})")
    return tuple(names)


def answer_graph(form: str) -> str:
    return "answer_" + form.replace("+", "_")


def submission(question_ids: np.ndarray, predictions: List[str]) -> List[dict]:
    """The VQA challenge's results format."""
    return [{"question_id": int(q), "answer": a} for q, a in zip(question_ids, predictions)]


def evaluate_run(run) -> List[str]:
    """eval.py --task vqa: every question form of vqa.eval_inputs, scored where the split has answers."""
    cfg, data = run.cfg, run.data()
    items = load_items(data, cfg.data, run.split)
    stored = load_answers(data, run.split)
    vocab = np.array(answer_vocabulary_of(data), dtype=object)
    human = stored.answer_lists(items.index)
    types = stored.answer_types[items.index]
    scored = all(human)
    run.report.update(items=len(items), answers=len(vocab), scored=scored, forms={})
    rows = []
    present = items.present()
    for form in parse_forms(cfg.vqa.eval_inputs, "vqa.eval_inputs"):
        usable = np.flatnonzero(present[:, [MODALITIES.index(m) for m in FORMS[form]]].all(1))
        if len(usable) == 0:
            run.log(f"{form} questions: no item of [{run.split}] has {' and '.join(FORMS[form])}; skipped")
            continue
        chosen = items.subset(usable)
        logits = run_batched(run.graphs[answer_graph(form)], len(chosen), cfg.eval.batch_size,
                             lambda r: chosen.compose({"text": r}))[0]
        predictions = list(vocab[logits.argmax(1)])
        answers_file = run.out_dir / f"vqa_answers_{run.split}_{form.replace('+', '_')}.json"
        write_json_atomic(answers_file, submission(stored.question_ids[items.index[usable]], predictions))
        result = {"questions": len(usable), "answers_file": str(answers_file)}
        if scored:
            result.update(accuracy_table(vqa_accuracy(predictions, [human[i] for i in usable]), types[usable]))
            rows.append(_row(f"{form} question + image", result))
        run.report["forms"][form] = result
    if not scored:
        return [f"[{run.split}] has no answers (a test split): answers written in the submission format"] + \
            [f"  {form}: {r['answers_file']}" for form, r in run.report["forms"].items()]
    training = run.training_data("majority baselines")
    train = load_answers(*training) if training is not None else None
    run.report["baselines"] = baselines(train, data, stored, items.index, human, types)
    rows += [_row(name, r) for name, r in run.report["baselines"].items()]
    return markdown_table(["answered from", "overall", "yes/no", "number", "other"], rows)


def baselines(train: Optional[Answers], data: PreparedData, stored: Answers, index: np.ndarray, human, types
              ) -> Dict[str, dict]:
    """The majority answer of the training questions `train` (overall, and per answer type: a model told the answer
    type; none without them), and the ceiling of a classifier over the answer vocabulary (its best answer for every
    question)."""
    out = {}
    majority = majority_answers(list(train.multiple_choice), list(train.answer_types)) if train else None
    for name, per_type in (("majority answer", False), ("majority answer per type", True)) if train else ():
        out[name] = accuracy_table(vqa_accuracy(majority_predictions(majority, types, per_type), human), types)
        out[name]["answer"] = majority if per_type else majority["overall"]
    vocab = answer_vocabulary_of(data)
    best = stored.dense(index, len(vocab)).argmax(1)
    out["vocabulary ceiling"] = accuracy_table(vqa_accuracy([vocab[i] for i in best], human), types)
    return out


def _row(name: str, result: dict) -> List[str]:
    return [name] + [f"{result[c]:.2f}" if c in result else "-" for c in COLUMNS]


def answer(args, graphs, cfg: Config) -> List[str]:
    """infer.py on a VQA run: the answers to --question (or a recorded question, --audio, or both) about --image,
    the vqa.top_k most likely with their probabilities."""
    if not args.image or not (args.question or args.audio):
        raise ConfigError("VQA reads --image and a question: --question TEXT, --audio RECORDING, or both")
    (best, top), = answer_rows(graphs, cfg, [args.image], [args.question] if args.question else [],
                               [args.audio] if args.audio else [], args.lang, errors="raise")
    return [best] + [f"  {p:.3f}  {a}" for a, p in top]


def answer_rows(graphs, cfg: Config, images: Sequence, questions: Sequence[str] = (), audios: Sequence = (),
                lang: str = "en", errors: str = "raise") -> list:
    """Per row, the answer to questions[i] (written) and/or audios[i] (spoken) about images[i], and the vqa.top_k
    most likely answers with their probabilities: (answer, [(answer, probability), ...]). Inputs are files, their
    bytes or decoded arrays; a row whose input cannot be read raises its FeatureError (errors="raise") or stands in
    the list in place of its answer (errors="return")."""
    if not len(images) or not (len(questions) or len(audios)):
        raise ConfigError("VQA answers a question (written, spoken or both) about an image: give both")
    form = "text+audio" if len(questions) and len(audios) else "text" if len(questions) else "audio"
    data = graphs.data(cfg)
    inputs, failed = files_inputs(data, cfg, images, audios, questions, lang)
    if errors == "raise" and any(failed):
        raise FeatureError(next(e for e in failed if e))
    usable = np.array([i for i, e in enumerate(failed) if e is None], np.int64)
    logits = run_batched(graphs[answer_graph(form)], len(usable), min(cfg.eval.batch_size, len(usable)),
                         lambda rows: tuple(x[usable[rows]] for x in inputs))[0] if len(usable) else []
    vocab = answer_vocabulary_of(data)
    answers = {}
    for i, row in zip(usable.tolist(), logits):
        top = np.argsort(-row, kind="stable")[:cfg.vqa.top_k]
        answers[i] = (vocab[top[0]], [(vocab[k], float(1.0 / (1.0 + np.exp(-row[k])))) for k in top])
    return [answers[i] if i in answers else FeatureError(failed[i]) for i in range(len(failed))]
