"""Cross-modal retrieval: fine-tuning with in-batch hard negatives and a contrastive objective.

Two scores rank candidates (evaluation is in `src/tasks/retrieval_eval.py`):
- a fast one: the cosine of pooled single-modality embeddings (the encoder over one modality, mean-pooled, projected);
- an accurate one: the cross-encoder's matching score, the 5-way matching head's "all match" logit on [CLS] of the
  joint sequence of query and candidate.

Fine-tuning trains both in one step. The three single-modality passes give the embeddings; InfoNCE over T-I, T-A and
I-A trains them. Each row also shows one view (a pair or the triple, chosen by the pipeline) twice to the cross-encoder:
as it is (label "all match") and with one modality swapped for its hardest in-batch negative under the embeddings (a
pair then matches nowhere: "none match"; a triple gets the paper's case for the swapped modality).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, ModelConfig
from src.data.masking import MATCH_CASES
from src.data.pipeline import open_training_data, training_data
from src.data.records import open_prepared
from src.infer.graphs import VERIFY_ROWS, Graph, GraphSet, match_graph
from src.model.losses import ContrastiveLoss, MatchingLoss, logit_scale_parameter, same_content
from src.model.layers import NEG
from src.modality import INPUT_COLUMNS, MODALITIES, input_layout
from src.model.opt import DataDims, with_view
from src.model.retrieval import MatchScore, PooledEmbeddings, RetrievalModel
from src.tasks.registry import Flags, Task, Training, register
from src.tasks.retrieval_eval import evaluate_run
from src.train.checkpoint import init_model



@dataclass
class RetrievalConfig:
    """Retrieval fine-tuning (`task: retrieval`): its two losses."""
    match: float = 1.0            # the cross-encoder's match / no match over the hardest in-batch negatives
    contrastive: float = 1.0      # InfoNCE between the pooled text, image and audio embeddings
    contrastive_temperature: float = 0.07  # its initial value (CLIP's): retrieval learns it, down to 0.01
    match_rows: int = 0           # the matching loss reads the first N rows of each batch (0: all of them)
    warm_start_epochs: int = 0    # epochs fitting the projections to their inputs under the frozen encoder over the
    #                               training items before fine-tuning (LP-FT; 0: off)


# The matching label of a triple whose text / image / audio was swapped (see MATCH_CASES), and of a pair that does
# not match.
SWAPPED_CASE = (1, 3, 2) + (0,) * (len(MODALITIES) - 3)  # a modality beyond the three is only swapped in a pair
PAIR_MISMATCH = len(MATCH_CASES) - 1


def load_trained(cfg: Config, ckpt, required=("net.", "match_head.", "projections.")):
    """(RetrievalModel in inference mode with the checkpoint's weights, the prepared data of cfg.data.path)."""
    from src.train.checkpoint import load_weights
    data = open_prepared(cfg.data.path)
    model = RetrievalModel(cfg.model, DataDims.from_prepared(data, cfg.data))
    load_weights(model, ckpt, required)
    model.set_train(False)
    return model, data


class RetrievalLoss(nn.Cell):
    """Batch columns (RETRIEVAL_COLUMNS) -> (weighted total, [match, contrastive]): the retrieval network (`model`)
    with its losses. Parameter names are the network's (net.*, match_head.*, projections.*) and the learnt
    temperature's (logit_scale), so checkpoints load either way.

    The contrastive loss runs over every row of the batch (single-modality passes are cheap); the matching loss over
    the first `retrieval.match_rows` of them (0: all), each shown twice at the full joint length, which costs most."""

    def __init__(self, model_cfg: ModelConfig, settings: RetrievalConfig, dims: DataDims):
        super().__init__(auto_prefix=False)
        self.model = RetrievalModel(model_cfg, dims)
        self.weights = ms.Tensor([settings.match, settings.contrastive], ms.float32)
        self.match_rows = settings.match_rows
        self.logit_scale = logit_scale_parameter(settings.contrastive_temperature)
        self.contrastive = ContrastiveLoss()
        self.matching_loss = MatchingLoss()
        self.modality_of_column = tuple(i for i, (_, _, count) in enumerate(input_layout()) for _ in range(count))
        self.initialised = tuple(init_model(self, model_cfg.init_from))

    def construct(self, *batch):  # RETRIEVAL_COLUMNS: the inputs, then present, content, view, swap
        inputs = batch[:len(INPUT_COLUMNS)]
        present, content, view, swap = batch[len(INPUT_COLUMNS):]
        embeddings = ops.stack(tuple(self.model.embed(m, *inputs) for m in MODALITIES))
        contrastive = self.contrastive(embeddings, present, content, self.logit_scale)
        same = same_content(content, present)
        rows = present.shape[0]
        k = self.match_rows if 0 < self.match_rows < rows else rows
        donors, found = self.hardest_negatives(ops.stop_gradient(embeddings), present, view, swap,
                                               ops.minimum(same.sum(0), 1.0))
        match = self.matching(inputs, view[:k], swap[:k], donors[:, :k], found[:k])
        losses = ops.stack((match, contrastive))
        return (losses * self.weights).sum(), losses

    def hardest_negatives(self, embeddings, present, view, swap, duplicates):
        """For each row, the in-batch row whose swapped modality is most similar (summed cosine) to the row's other
        shown modalities, among the rows that share none of its inputs (`duplicates` [B, B]). Returns donor row
        indices per modality [modalities, B] and whether a valid donor exists [B]."""
        n, b = embeddings.shape[0], embeddings.shape[1]
        flat = embeddings.reshape(n * b, -1)
        sims = ops.matmul(flat, flat.T).reshape(n, b, n, b).transpose(0, 2, 1, 3)  # [o, m, i, j] = e_o[i] . e_m[j]
        anchors = (view * (1.0 - swap)).T.reshape(n, 1, b, 1)  # the modalities a row keeps
        hardness = (sims * anchors).sum(0)  # [m, i, j]
        blocked = ops.minimum(duplicates.expand_dims(0) + (1.0 - present.T).expand_dims(1), 1.0)
        hardness = hardness + blocked * NEG * 10.0
        donors = hardness.argmax(-1).astype(ms.int32)  # [m, i]
        best = (ops.amax(hardness, -1) * swap.T).sum(0)
        return donors, (best > NEG).astype(ms.float32)

    def matching(self, inputs, view, swap, donors, found):
        """Matching loss over the first b rows (b = len(view)), each row's view shown as it is and with its swapped
        modality from its donor (a row of the whole batch)."""
        b = view.shape[0]
        own = ops.arange(0, b, dtype=ms.int32)
        # [modalities, b]: the row each modality of each row comes from
        source = ops.select(swap.T > 0, donors, own.expand_dims(0).broadcast_to(donors.shape[:1] + (b,)))
        rows = tuple(ops.concat((x[:b], x[source[m]])) for x, m in zip(inputs, self.modality_of_column))
        states, _ = self.model.net.encode(*with_view(self.model.net.layout, rows, ops.concat((view, view))))
        triple = view.sum(1) > 2.5
        swapped_case = (swap * ms.Tensor(SWAPPED_CASE, ms.float32)).sum(1).astype(ms.int32)
        negative_label = ops.select(triple, swapped_case, ops.full((b,), PAIR_MISMATCH, dtype=ms.int32))
        labels = ops.concat((ops.zeros((b,), ms.int32), negative_label))
        usable = (view.sum(1) > 1.5).astype(ms.float32)
        weights = ops.concat((usable, usable * found))
        return self.matching_loss(self.model.match_head(states[:, 0]), labels, weights)


def build(cfg: Config, num_shards: int = 1, shard_id: int = 0):
    """(loss cell, make_dataset(epoch, start_batch), batches per epoch) for `src.train.trainer.fit`."""
    data = open_training_data(cfg.data)
    make_dataset, per_epoch = training_data(data, cfg.data, "retrieval", num_shards, shard_id)
    loss_net = RetrievalLoss(cfg.model, cfg.retrieval, DataDims.from_prepared(data, cfg.data))
    return loss_net, make_dataset, per_epoch


def warm_start(cfg: Config, loss_net: RetrievalLoss):
    """`fit`'s warm start (run when training starts from scratch): the projections fitted to their inputs under the
    frozen encoder first (`retrieval.warm_start_epochs`); None when off."""
    if cfg.retrieval.warm_start_epochs <= 0:
        return None
    from src.tasks.linear_retrieval import fit_projections
    return lambda: fit_projections(loss_net, cfg)


def retrieval_graphs(cfg: Config, ckpt) -> GraphSet:
    """`embed` (unit-length text, image and audio embeddings) and `match_<modalities>` for every set of two or three
    modalities (the cross-encoder's "all match" logit)."""
    model, _ = load_trained(cfg, ckpt)

    def example(items):
        return items.compose({"text": np.arange(VERIFY_ROWS)})
    graphs = {"embed": Graph(PooledEmbeddings(model), INPUT_COLUMNS, [f"{m}_embedding" for m in MODALITIES], example)}
    for n in range(2, len(MODALITIES) + 1):
        for shown in itertools.combinations(MODALITIES, n):
            graphs[match_graph(shown)] = Graph(MatchScore(model, shown), INPUT_COLUMNS, ["match_logit"], example)
    return GraphSet(graphs)


def add_eval_flags(group) -> None:
    group.add_argument("--full", action="store_true", help="also rank with the all-pairs cross-encoder (slow)")


RENAMED = {f"loss.{key}": f"retrieval.{key}"
           for key in ("contrastive", "contrastive_temperature", "match_rows", "warm_start_epochs")}
register(Task("retrieval", __name__, settings=RetrievalConfig, renamed=RENAMED,
              training=Training(build, ("match", "contrastive"), warm_start=warm_start), graphs=retrieval_graphs,
              evaluate=evaluate_run, flags={"evaluate": Flags(add_eval_flags)},
              help="R@1/5/10 and median rank in every direction (two-stage: embeddings, then cross-encoder rerank)"))
