"""VQA evaluation and inference: answer a split in each question form (text, spoken, both) and score it with the
official VQA accuracy, overall and per answer type, beside the majority-answer baselines and the ceiling of the
answer vocabulary; write the answers in the submission format; answer one question about one image (infer.py).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np

from src.config import Config, ConfigError
from src.data.records import PreparedData, write_json_atomic
from src.data.vqa import Answers, answer_vocabulary_of, load_answers
from src.infer.file_inputs import file_inputs
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
    form = "text+audio" if args.question and args.audio else "text" if args.question else "audio"
    data = graphs.data(cfg)
    inputs = file_inputs(data, cfg, args.image, args.audio, args.question, args.lang)
    logits = graphs[answer_graph(form)](*(ms.Tensor(x) for x in inputs))
    logits = logits.asnumpy()[0]
    vocab = answer_vocabulary_of(data)
    top = np.argsort(-logits, kind="stable")[:cfg.vqa.top_k]
    probs = 1.0 / (1.0 + np.exp(-logits[top]))
    return [vocab[top[0]]] + [f"  {p:.3f}  {vocab[i]}" for i, p in zip(top, probs)]
