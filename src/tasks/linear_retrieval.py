"""Retrieval heads fitted to fixed features in seconds: the projections and temperature of `RetrievalLoss`, trained by
the same duplicate-aware InfoNCE on pooled features computed once, then reused at no cost per step.

Two uses:
- the warm start of fine-tuning (`retrieval.warm_start_epochs`): linear probing, then fine-tuning (LP-FT). What the
  projections read (`RetrievalModel.embedding_inputs`: the frozen pre-trained encoder's pooled states, and the
  single-modal features) over every training item trains the heads first, so fine-tuning starts from heads that
  already rank, instead of spending its first steps (and the encoder's features) on random ones;
- the baseline printed beside retrieval evaluation (`eval.baseline_text`): the same heads over the frozen input
  features (MiniLM's mean-pooled sentence states, the mean EfficientNet grid, the mean Whisper states), which a
  fine-tuned model has to beat.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Dict, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, DataConfig, ModelConfig
from src.data.content import fingerprints
from src.data.padding import READ_COLUMNS, Padder
from src.data.tokenizer import minilm_dir
from src.infer.items import Items, content_codes, run_batched
from src.modality import COLUMNS_OF, INPUT_COLUMNS, MODALITIES
from src.model.opt import DataDims
from src.model.losses import ContrastiveLoss, l2_normalise, logit_scale_parameter
from src.model.retrieval import ModalityEmbedding, Projection, RetrievalModel
from src.train.checkpoint import init_model

BATCH_SIZE = 256  # rows per InfoNCE batch: many negatives, and on CPU a step still takes milliseconds
CHUNK = 256  # training items held as padded model inputs at once by the warm start (350 KB each at the demo's shapes:
#              the whole demo split at once was 1.5 GB, and 2.2 GB while it was being padded)


class LinearHeads(nn.Cell):
    """One projection per modality (input widths `feature_dims`, text / image / audio) and the learnt logit scale.
    Parameter names are those of `RetrievalLoss` (projections.*, logit_scale): fitted heads load into it."""

    def __init__(self, feature_dims: Sequence[int], embed_dim: int, eps: float, temperature: float):
        super().__init__()
        self.projections = nn.CellDict({m: Projection(d, embed_dim, eps) for m, d in zip(MODALITIES, feature_dims)})
        self.logit_scale = logit_scale_parameter(temperature)
        self.contrastive = ContrastiveLoss()

    def embed(self, modality, features):
        return l2_normalise(self.projections[modality](features))

    def construct(self, *batch):  # each modality's features, then present, content
        features, present, content = batch[:-2], batch[-2], batch[-1]
        embedded = ()
        for modality, feature in zip(MODALITIES, features):
            embedded = embedded + (self.embed(modality, feature),)
        embeddings = ops.stack(embedded)
        return self.contrastive(embeddings, present, content, self.logit_scale)


def fit_heads(features: Sequence[np.ndarray], present: np.ndarray, content: np.ndarray, embed_dim: int, eps: float,
              temperature: float, epochs: int, lr: float, seed: int = 0) -> LinearHeads:
    """Heads fitted to `features` (text, image, audio: [N, d_m] each), present [N, 3], content [N, 3] int (rows with
    the same value share that input) by Adam over shuffled batches of BATCH_SIZE rows, the last partial one dropped
    (every batch has one shape, so the step compiles once)."""
    n = len(present)
    batch = min(BATCH_SIZE, n)
    heads = LinearHeads([f.shape[1] for f in features], embed_dim, eps, temperature)
    for m, f, has in zip(MODALITIES, features, present.T > 0):
        if has.any():
            heads.projections[m].set_statistics(f[has])
    steps = max(epochs * (n // batch), 1)
    schedule = nn.CosineDecayLR(0.0, lr, steps)
    step = nn.TrainOneStepCell(heads, nn.Adam(heads.trainable_params(), schedule))
    step.set_train(True)
    columns = [f.astype(np.float32) for f in features] + [present.astype(np.float32), content.astype(np.int32)]
    rng = np.random.default_rng(seed)
    done = 0
    while done < steps:
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            rows = order[start:start + batch]
            step(*(ms.Tensor(c[rows]) for c in columns))
            done += 1
            if done == steps:
                break
    heads.set_train(False)
    return heads


def head_embeddings(heads: LinearHeads, features: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    """Modality -> unit-length embeddings [N, embed_dim] of `features` under fitted heads."""
    return {m: heads.embed(m, ms.Tensor(f.astype(np.float32))).asnumpy() for m, f in zip(MODALITIES, features)}


def embedding_features(model: RetrievalModel, items: Items, batch_size: int, modalities: Sequence[str] = MODALITIES):
    """[N, width] projection inputs of each of `modalities` of `items` under `model` (in inference mode). Each
    distinct input is encoded once (on the demo an image has two captions, and a caption often two items)."""
    out = []
    for m in modalities:
        _, first, inverse = np.unique(content_codes(items, (m,)), return_index=True, return_inverse=True)
        pooled = run_batched(ModalityEmbedding(model, m, projected=False), len(first), batch_size,
                             lambda rows: items.compose({m: first[rows]}))[0]  # noqa: B023 (run_batched calls it now)
        out.append(pooled[inverse])
    return tuple(out)


def item_contents(items: Items) -> np.ndarray:
    """[N, 3] int: per modality, equal for items with the same input (the duplicates InfoNCE leaves out)."""
    return np.stack([content_codes(items, (m,)) for m in MODALITIES], axis=1)


def item_chunks(data, cfg: DataConfig, split: str, chunk: int = CHUNK):
    """The items of `split` in its shards' order (as `load_items`), `chunk` at a time."""
    import mindspore.dataset as ds
    padder, rows = Padder(data, cfg), []

    def padded():
        arrays = padder(len(rows), {c: [row[k] for row in rows] for k, c in enumerate(READ_COLUMNS)})
        return Items({c: arrays[c] for c in INPUT_COLUMNS}, arrays["index"], arrays["labels"])
    reader = ds.MindDataset(data.files(split), columns_list=READ_COLUMNS, shuffle=False)
    for row in reader.create_tuple_iterator(num_epochs=1, output_numpy=True):
        rows.append(row)
        if len(rows) == chunk:
            yield padded()
            rows = []
    if rows:
        yield padded()


def streamed_embedding_features(model: RetrievalModel, data, cfg: Config):
    """`embedding_features`, `present` and `item_contents` of the whole training split, read CHUNK items at a time
    (the split's padded inputs are never all in memory; what is kept is [N, width] per modality). Each distinct
    input is encoded once, as in `embedding_features`. Returns ((text, image, audio) features, present, contents)."""
    cells = {m: ModalityEmbedding(model, m, projected=False) for m in MODALITIES}
    known = {m: {} for m in MODALITIES}  # fingerprint of an input -> what the projection reads
    prints, present = [], []
    for items in item_chunks(data, cfg.data, cfg.data.train_split):
        chunk_prints = []
        for m in MODALITIES:
            keys = fingerprints([items.inputs[c] for c in COLUMNS_OF[m]])
            _, first = np.unique(keys, return_index=True)
            new = np.array([i for i in first if keys[i] not in known[m]], np.int64)
            if len(new):
                pooled = run_batched(cells[m], len(new), cfg.eval.batch_size,
                                     lambda rows: items.compose({m: new[rows]}))[0]  # noqa: B023 (called now)
                known[m].update(zip(keys[new], pooled))
            chunk_prints.append(keys)
        prints.append(np.stack(chunk_prints, axis=1))
        present.append(items.present())
    prints = np.concatenate(prints)
    features = tuple(np.stack([known[m][key] for key in prints[:, k]]) for k, m in enumerate(MODALITIES))
    contents = np.stack([np.unique(prints[:, k], return_inverse=True)[1] for k in range(len(MODALITIES))], axis=1)
    return features, np.concatenate(present), contents


def fit_projections(loss_net, cfg: Config, log=print) -> None:
    """Fit the projections and temperature of `loss_net` (src/tasks/retrieval.py's RetrievalLoss: its `model` and
    `logit_scale`) to their inputs under its frozen encoder over every training item (`retrieval.warm_start_epochs`
    epochs at eval.probe_lr), in place."""
    from src.data.records import open_prepared
    started = time.perf_counter()
    loss_net.set_train(False)
    features, present, contents = streamed_embedding_features(loss_net.model, open_prepared(cfg.data.path), cfg)
    loss_net.set_train(True)
    heads = fit_heads(features, present, contents, cfg.model.embed_dim,
                      cfg.model.layer_norm_eps, cfg.retrieval.contrastive_temperature, cfg.retrieval.warm_start_epochs,
                      cfg.eval.probe_lr, cfg.train.seed)
    targets = loss_net.parameters_dict()
    for name, p in heads.parameters_and_names():  # the fixed statistics too
        if name.startswith(("projections.", "logit_scale")):
            targets[name].set_data(p.value())
    log(f"warm start: projections fitted to what they read under the frozen encoder, {len(present)} training items "
        f"({cfg.retrieval.warm_start_epochs} epochs, {time.perf_counter() - started:.0f} s)")


def minilm_model_config(base: ModelConfig) -> ModelConfig:
    """`base` with MiniLM's encoder shape (from its config.json) and no decoders."""
    shape = json.loads((minilm_dir() / "config.json").read_text())
    return dataclasses.replace(base, hidden=shape["hidden_size"], layers=shape["num_hidden_layers"],
                               heads=shape["num_attention_heads"], intermediate=shape["intermediate_size"],
                               max_positions=shape["max_position_embeddings"], decoder_layers=0,
                               vision_decoder_layers=0, init_from="")


def frozen_input_features(items: Items, text_encoder: RetrievalModel, batch_size: int):
    """(text, image, audio) features of the frozen-feature baseline: the text encoder's mean-pooled states, the mean
    of the valid image regions and of the valid audio frames."""
    text, = embedding_features(text_encoder, items, batch_size, ("text",))
    return text, items.mean_features("image"), items.mean_features("audio")


def frozen_feature_embeddings(cfg: Config, data, train: Items, test: Items, log=print) -> Dict[str, np.ndarray]:
    """Embeddings of `test` under heads fitted on `train`'s frozen input features (the retrieval baseline). Seeded
    (train.seed): the heads' initial weights come from MindSpore's global random state, so without it the baseline
    depended on what the process had built before (a checkpoint's network, or none for an export)."""
    started = time.perf_counter()
    ms.set_seed(cfg.train.seed)
    dims = DataDims.from_prepared(data, cfg.data)
    text_model = RetrievalModel(minilm_model_config(cfg.model), dims)
    init_model(text_model, cfg.eval.baseline_text)
    text_model.set_train(False)
    train_x = frozen_input_features(train, text_model, cfg.eval.batch_size)
    heads = fit_heads(train_x, train.present(), item_contents(train), cfg.model.embed_dim, cfg.model.layer_norm_eps,
                      cfg.retrieval.contrastive_temperature, cfg.eval.baseline_epochs, cfg.eval.probe_lr,
                      cfg.train.seed)
    embeddings = head_embeddings(heads, frozen_input_features(test, text_model, cfg.eval.batch_size))
    log(f"frozen-feature baseline: heads fitted on {len(train)} training items "
        f"({time.perf_counter() - started:.0f} s)")
    return embeddings
