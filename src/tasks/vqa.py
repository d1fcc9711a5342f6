"""Visual question answering: the question (text, a recording of it, or both) and the image go through the
cross-modal encoder; an answer head on [CLS] scores every answer of the vocabulary (src/data/vqa.py), trained with
binary cross-entropy against the soft scores min(1, humans who gave it / 3), as UNITER does.

One fine-tuned model answers written and spoken questions: each training row shows its question in one of the forms
of `vqa.inputs` (drawn per row by the pipeline), the image always. Evaluation (src/tasks/vqa_eval.py) answers the
split in every form of `vqa.eval_inputs` and scores it with the official VQA accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, ConfigError, ModelConfig
from src.data.objectives import register_objective
from src.data.padding import modalities_present
from src.data.pipeline import open_training_data, training_data
from src.data.records import PreparedData, open_prepared
from src.data.vqa import answer_vocabulary_of, load_answers
from src.infer.graphs import VERIFY_ROWS, Graph, GraphSet
from src.modality import INPUT_COLUMNS, MODALITIES
from src.model.losses import SoftBCE
from src.model.opt import OPT, DataDims, masked_mean, with_view
from src.tasks.registry import Flags, Task, Training, register
from src.tasks.vqa_eval import FORMS, answer, answer_graph, evaluate_run, parse_forms
from src.train.checkpoint import init_model
from src.model.primitives import GELU, Dense, LayerNorm



@dataclass
class VQAConfig:
    """Visual question answering (`task: vqa`): the question forms each training row shows one of (the image always),
    and those eval.py answers and scores."""
    # question forms (text | audio | text+audio) a training row shows one of
    inputs: List[str] = field(default_factory=lambda: ["text", "audio", "text+audio"])
    eval_inputs: List[str] = field(default_factory=lambda: ["text", "audio", "text+audio"])  # the forms eval.py scores
    pooling: str = "cls+segments" # what the answer head reads: cls (UNITER's) | cls+segments ([CLS] and each segment's
    #                               mean state side by side)
    weight: float = 1.0           # of the loss: binary cross-entropy of the answer head against the soft answer scores
    top_k: int = 5                # infer.py: the answers listed with their probabilities


VQA_COLUMNS = INPUT_COLUMNS + ["view", "row_weight", "targets"]


def question_views(present: np.ndarray, forms: Sequence[Tuple[int, ...]], rng: np.random.Generator):
    """Per row, the modalities it shows: one of `forms` (tuples of modality indices) that the row has, drawn
    uniformly. present [B, 3] bool -> (view [B, 3] float32, weight [B] float32: 0 for a row with no usable form)."""
    view = np.zeros(present.shape, np.float32)
    weight = np.zeros(len(present), np.float32)
    for i, has in enumerate(present):
        options = [f for f in forms if has[list(f)].all()]
        if options:
            view[i, list(options[rng.integers(len(options))])] = 1.0
            weight[i] = 1.0
    return view, weight


class VQAObjective:
    """Per row: the question form it shows, and its soft answer scores [B, answers] (the split's stored answers)."""
    columns = VQA_COLUMNS

    def __init__(self, data: PreparedData, cfg, forms: Sequence[str] = tuple(FORMS)):
        self.forms = tuple(tuple(MODALITIES.index(m) for m in FORMS[f]) for f in forms)
        self.answers = load_answers(data, cfg.train_split)
        self.num_answers = len(answer_vocabulary_of(data))

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        batch["view"], batch["row_weight"] = question_views(modalities_present(batch), self.forms, rng)
        batch["targets"] = self.answers.dense(batch["index"], self.num_answers)
        return batch


register_objective("vqa", VQAObjective)


class AnswerHead(nn.Cell):
    """UNITER's VQA head: Linear(input, 2H), GELU, LayerNorm, Linear(2H, answers). The output bias starts at the
    log-odds of 1 / answers, so the untrained head predicts a small probability for every answer (not one half: the
    summed binary cross-entropy over thousands of answers would start in the thousands and the first steps would only
    push every answer down)."""

    def __init__(self, width: int, hidden: int, answers: int, eps: float):
        super().__init__()
        self.dense = Dense(width, 2 * hidden)
        self.act = GELU()
        self.norm = LayerNorm(2 * hidden, eps)
        prior = float(np.log(1.0 / max(answers, 2)) - np.log1p(-1.0 / max(answers, 2)))
        self.out = Dense(2 * hidden, answers, bias_init=ms.common.initializer.Constant(prior))

    def construct(self, x):
        return self.out(self.norm(self.act(self.dense(x))))


POOLINGS = ("cls", "cls+segments")


class VQAModel(nn.Cell):
    """The OPT encoder and the answer head. What the head reads (vqa.pooling): [CLS] alone (UNITER's), or [CLS] and
    the mean state of the text (after [CLS]), image and audio segments side by side, zeros for a modality not shown
    (the default: each modality's evidence reaches the head directly, as the linear probe's per-segment means)."""

    def __init__(self, model_cfg: ModelConfig, dims: DataDims, answers: int, pooling: str = "cls+segments"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"vqa.pooling must be one of {', '.join(POOLINGS)}, got '{pooling}'")
        self.segment_means = pooling == "cls+segments"
        width = model_cfg.hidden * (1 + len(MODALITIES) if self.segment_means else 1)
        self.net = OPT(model_cfg, dims)
        self.answer_head = AnswerHead(width, model_cfg.hidden, answers, model_cfg.layer_norm_eps)

    def answer_logits(self, states, segments):
        """Encoder states [B, L, H] over `segments` ((modality, mask) in sequence order, text or [CLS] alone first)
        -> answer logits [B, answers]."""
        return self.answer_head(self.pooled(states, segments))

    def pooled(self, states, segments):
        """What the answer head reads [B, width]."""
        cls = states[:, 0]
        if not self.segment_means:
            return cls
        means = {m: cls * 0.0 for m in MODALITIES}  # zeros of a dynamic batch: an absent modality
        start = 0
        for name, mask in segments:
            length = mask.shape[1]
            if name != "text":
                means[name] = masked_mean(states[:, start:start + length], mask)
            elif length > 1:
                means[name] = masked_mean(states[:, 1:length], mask[:, 1:])
            start = start + length
        return ops.concat((cls,) + tuple(means[m] for m in MODALITIES), axis=1)

    def view_features(self, view, *inputs):
        """What the answer head reads, for rows that show the modalities of `view` [B, modalities] (training's
        question forms): the others are masked out ([CLS] stays at the head of the sequence)."""
        inputs = with_view(self.net.layout, inputs, view)
        states, _ = self.net.encode(*inputs)
        segments = ()
        for name, start, count in self.net.layout:
            segments = segments + ((name, inputs[start + count - 1]),)
        return self.pooled(states, segments)


class AnswerScores(nn.Cell):
    """Model inputs -> answer logits [B, answers] from [CLS] over the segments of `modalities` (absent segments are
    left out of the sequence)."""

    def __init__(self, model: VQAModel, modalities: Tuple[str, ...]):
        super().__init__(auto_prefix=False)
        self.model, self.modalities = model, modalities

    def construct(self, *inputs):
        parts, masks = self.model.net.segments(self.modalities, *inputs)
        states, _ = self.model.net.encode_segments(parts, masks)
        names = ("text",) + tuple(m for m in self.modalities if m != "text")
        return self.model.answer_logits(states, tuple(zip(names, masks)))


class VQALoss(nn.Cell):
    """Batch columns (VQA_COLUMNS) -> (weighted loss, [vqa loss]): the VQA network (`model`, whose parameter names it
    keeps) with binary cross-entropy of every answer against its soft score, summed over the answers and averaged over
    the rows (UNITER's scale)."""

    def __init__(self, model_cfg: ModelConfig, dims: DataDims, answers: int, pooling: str = "cls+segments",
                 weight: float = 1.0):
        super().__init__(auto_prefix=False)
        self.model = VQAModel(model_cfg, dims, answers, pooling)
        self.weight = weight
        self.bce = SoftBCE()
        self.initialised = tuple(init_model(self, model_cfg.init_from))

    def construct(self, *batch):  # VQA_COLUMNS: the inputs, then view, row_weight, targets
        view, row_weight, targets = batch[len(INPUT_COLUMNS):]
        features = self.model.view_features(view, *batch[:len(INPUT_COLUMNS)])
        loss = self.bce(self.model.answer_head(features), targets, row_weight)
        return loss * self.weight, ops.stack((loss,))


def build(cfg: Config, num_shards: int = 1, shard_id: int = 0):
    """(loss cell, make_dataset(epoch, start_batch), batches per epoch) for `src.train.trainer.fit`."""
    forms = parse_forms(cfg.vqa.inputs, "vqa.inputs")
    data = open_training_data(cfg.data)
    make_dataset, per_epoch = training_data(data, cfg.data, "vqa", num_shards, shard_id, forms=forms)
    loss_net = VQALoss(cfg.model, DataDims.from_prepared(data, cfg.data),
                       len(answer_vocabulary_of(data)), cfg.vqa.pooling, cfg.vqa.weight)
    return loss_net, make_dataset, per_epoch


def load_trained(cfg: Config, ckpt):
    """(VQAModel in inference mode with the checkpoint's weights, the prepared data of cfg.data.path)."""
    from src.train.checkpoint import load_weights
    data = open_prepared(cfg.data.path)
    model = VQAModel(cfg.model, DataDims.from_prepared(data, cfg.data),
                     len(answer_vocabulary_of(data)), cfg.vqa.pooling)
    load_weights(model, ckpt, ("net.", "answer_head."))
    model.set_train(False)
    return model, data


def vqa_graphs(cfg: Config, ckpt) -> GraphSet:
    """`answer_<form>` for every question form of vqa.eval_inputs: model inputs -> answer logits."""
    model, _ = load_trained(cfg, ckpt)
    return GraphSet({answer_graph(form): Graph(AnswerScores(model, FORMS[form]), INPUT_COLUMNS, ["answer_logits"],
                                               lambda items: items.compose({"text": np.arange(VERIFY_ROWS)}))
                     for form in parse_forms(cfg.vqa.eval_inputs, "vqa.eval_inputs")})


def add_infer_flags(group) -> None:
    group.add_argument("--question", default=None, help="the question about --image (or --audio, a recording of it, "
                                                        "or both)")


register(Task("vqa", __name__, settings=VQAConfig, renamed={"loss.vqa": "vqa.weight"},
              training=Training(build, ("vqa",)), graphs=vqa_graphs, evaluate=evaluate_run, infer=answer,
              infer_from=("vqa",), flags={"infer": Flags(add_infer_flags, lambda args: args.question is not None)},
              help="VQA accuracy per answer type, for text, spoken and both question forms, beside the majority "
                   "answers"))
