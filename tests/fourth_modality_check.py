"""Run by tests/test_fourth_modality.py in a process started with OPT_PLUGINS=tests.plugins.sketch: with a fourth
modality registered by the plugin alone, a batch of stored rows is padded, corrupted for pre-training and given views
for retrieval, and the pre-training and retrieval cells take a train step on it (graph mode) with every loss finite.
Prints one JSON line of what it saw."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import mindspore as ms
import numpy as np

from src.config import ConfigError, DataConfig, LossConfig, ModelConfig, load_config
from src.data.objectives import PRETRAIN_COLUMNS, RETRIEVAL_COLUMNS, Pretrain, Retrieval
from src.data.padding import READ_COLUMNS, Padder
from src.data.records import PreparedData, encode_features
from src.modality import BOX_DIM, INPUT_COLUMNS, MODALITIES
from src.model.opt import DataDims
from src.tasks.pretrain import LOSS_NAMES, PretrainLoss, loss_weights
from src.tasks.retrieval import RetrievalConfig, RetrievalLoss
from src.tasks.retrieval_eval import DIRECTIONS

VOCAB, DIMS, TOP_K, ROWS = 60, {"image": 12, "audio": 10, "sketch": 6}, 2, 8
SPECIAL = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


def made_up_data() -> PreparedData:
    meta = {"text": {"vocab_size": VOCAB, "special_ids": SPECIAL}, "labels": [], "splits": {},
            "image": {"feature_dim": DIMS["image"], "mrc": {"top_k": TOP_K, "num_classes": 5}},
            "audio": {"feature_dim": DIMS["audio"]}, "sketch": {"feature_dim": DIMS["sketch"]}}
    return PreparedData(Path("."), meta)


def stored_rows(rng) -> dict:
    """ROWS rows of every READ_COLUMNS column: each row has text, image, audio and a sketch of 3 regions."""
    rows = {c: [] for c in READ_COLUMNS}
    for i in range(ROWS):
        pieces = rng.integers(5, VOCAB, 6).astype(np.int32)
        values = {"index": i, "text_ids": pieces, "n_text": len(pieces),
                  "image_feat": encode_features(rng.normal(size=(4, DIMS["image"]))),
                  "image_boxes": rng.random(4 * BOX_DIM).astype(np.float32),
                  "mrc_ids": rng.integers(0, 5, 4 * TOP_K).astype(np.int32),
                  "mrc_probs": np.full(4 * TOP_K, 0.5, np.float32), "n_regions": 4,
                  "audio_feat": encode_features(rng.normal(size=(5, DIMS["audio"]))), "n_audio": 5,
                  "sketch_feat": encode_features(rng.normal(size=(3, DIMS["sketch"]))),
                  "sketch_boxes": rng.random(3 * BOX_DIM).astype(np.float32), "n_sketch": 3,
                  "labels": np.zeros(0, np.int32), "n_labels": 0}
        for c in READ_COLUMNS:
            rows[c].append(values[c])
    return rows


def train_step(loss_net, columns) -> np.ndarray:
    optimizer = ms.nn.Adam(loss_net.trainable_params(), learning_rate=1e-3)
    grad = ms.value_and_grad(loss_net, None, optimizer.parameters, has_aux=True)
    (_, losses), grads = grad(*[ms.Tensor(columns[c]) for c in loss_net_columns(loss_net)])
    optimizer(grads)
    return losses.asnumpy()


def loss_net_columns(loss_net):
    return PRETRAIN_COLUMNS if isinstance(loss_net, PretrainLoss) else RETRIEVAL_COLUMNS


def main() -> None:
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    rng = np.random.default_rng(0)
    data, cfg = made_up_data(), DataConfig(max_text_len=10, max_regions=4, max_audio_tokens=6, batch_size=ROWS)
    batch = Padder(data, cfg)(ROWS, stored_rows(rng))
    model = ModelConfig(hidden=16, layers=1, heads=2, intermediate=32, decoder_layers=1, vision_decoder_layers=0,
                        max_positions=16, dropout=0.0, embed_dim=8)
    dims = DataDims.from_prepared(data, cfg)
    pretrain = Pretrain(data, cfg)(dict(batch), rng)
    retrieval = Retrieval(data, cfg)(dict(batch), rng)
    out = {"modalities": list(MODALITIES), "input_columns": INPUT_COLUMNS, "loss_names": list(LOSS_NAMES),
           "sketch_mask": batch["sketch_mask"].sum(1).tolist(), "sketch_masked": pretrain["skm_weights"].sum(),
           "present": retrieval["present"].tolist(), "directions": [d for d in DIRECTIONS if "sketch" in d],
           "pretrain": train_step(PretrainLoss(model, LossConfig(), dims), pretrain).tolist(),
           "retrieval": train_step(RetrievalLoss(model, RetrievalConfig(), dims), retrieval).tolist()}
    out["sketch_masked"] = float(out["sketch_masked"])
    out["weights"] = dict(zip(LOSS_NAMES, loss_weights(load_config(None, ["loss.further={sketch_fr: 0.5}"]).loss)))
    try:
        loss_weights(LossConfig(further={"sketch_rf": 0.5}))
    except ConfigError as e:
        out["misspelt"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
