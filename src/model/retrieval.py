"""The retrieval network: the OPT network with the 5-way matching head and one projection per modality, and the
inference cells over it (every modality's embedding, one modality's embedding, the cross-encoder's match score).
Training is in `src/tasks/retrieval.py`, evaluation in `src/tasks/retrieval_eval.py`."""
from __future__ import annotations

from typing import Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import ModelConfig
from src.data.masking import MATCH_CASES
from src.modality import MODALITIES, SPECS, input_layout
from src.model.losses import l2_normalise
from src.model.opt import OPT, DataDims, masked_mean
from src.model.primitives import Dense, LayerNorm



class Projection(nn.Cell):
    """Pooled states -> embedding: standardised by fixed statistics, LayerNorm, then a linear map.

    The statistics (`mean`, `inv_std`: 0 and 1 unless the warm start sets them to those of the training features)
    matter because pooled encoder states of different items are nearly parallel (cosine 0.998 after the demo
    pre-training): the shared part swamps the differences, and a per-row LayerNorm does not remove it. They are fixed,
    not batch statistics: a BatchNorm's moving statistics lag the weights during fine-tuning, so evaluation would
    embed with numbers that training never used."""

    def __init__(self, hidden: int, embed_dim: int, eps: float):
        super().__init__()
        self.mean = ms.Parameter(ms.Tensor(np.zeros(hidden, np.float32)), name="mean", requires_grad=False)
        self.inv_std = ms.Parameter(ms.Tensor(np.ones(hidden, np.float32)), name="inv_std", requires_grad=False)
        self.norm = LayerNorm(hidden, eps)
        self.dense = Dense(hidden, embed_dim)

    def construct(self, x):
        return self.dense(self.norm((x - self.mean) * self.inv_std))

    def set_statistics(self, features: np.ndarray) -> None:
        """Standardise by the mean and spread of `features` [N, hidden]."""
        self.mean.set_data(ms.Tensor(features.mean(0).astype(np.float32)))
        self.inv_std.set_data(ms.Tensor((1.0 / (features.std(0) + 1e-6)).astype(np.float32)))


def embedding_widths(hidden: int, dims: DataDims) -> dict:
    """Modality -> the width of what its projection reads (`RetrievalModel.embedding_inputs`): the pooled states,
    and beside them its input features' when it has features (the modality spec's has_features)."""
    return {m: hidden + (dims.feature_dims[m] if spec.has_features else 0) for m, spec in SPECS.items()}


class RetrievalModel(nn.Cell):
    """The OPT network with the matching head and one projection per modality. Parameter names (net.*, match_head.*)
    are those of the pre-training cell, so a pre-trained checkpoint loads into it directly."""

    def __init__(self, model_cfg: ModelConfig, dims: DataDims):
        super().__init__()
        self.net = OPT(model_cfg, dims)
        self.match_head = Dense(model_cfg.hidden, len(MATCH_CASES))
        self.projections = nn.CellDict({m: Projection(width, model_cfg.embed_dim, model_cfg.layer_norm_eps)
                                        for m, width in embedding_widths(model_cfg.hidden, dims).items()})
        # modality -> (its features' column, its mask's column) in the inputs, for those with features (the first
        # column of its spec)
        self.feature_columns = {m: (start, start + count - 1) for m, start, count in input_layout()
                                if SPECS[m].has_features}

    def embedding_inputs(self, modality, *inputs):
        """What the projection of `modality` reads: the cross-modal encoder's states over that modality alone,
        mean-pooled, and for image and audio beside them the mean output of their single-modal encoder (the
        EfficientNet regions, the Whisper frames; the text's is the encoder itself). The pooled states of a short
        pre-training keep less of what tells two images apart than the features they were computed from (on the demo
        a head over the input features alone retrieves better), so the fast score reads both."""
        states, mask = self.net.encode_only((modality,), *inputs)
        pooled = masked_mean(states, mask)
        if modality in self.feature_columns:
            features, mask = self.feature_columns[modality]
            pooled = ops.concat((pooled, masked_mean(inputs[features], inputs[mask])), axis=1)
        return pooled

    def embed(self, modality, *inputs):
        """Unit-length [B, embed_dim] embedding of one modality of each row, encoded alone."""
        return l2_normalise(self.projections[modality](self.embedding_inputs(modality, *inputs)))

    def match_logits(self, modalities, *inputs):
        """[B, 5] matching logits of the rows shown with `modalities` only."""
        states, _ = self.net.encode_only(modalities, *inputs)
        return self.match_head(states[:, 0])


class PooledEmbeddings(nn.Cell):
    def __init__(self, model: RetrievalModel):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, *inputs):
        return tuple(self.model.embed(m, *inputs) for m in MODALITIES)


class ModalityEmbedding(nn.Cell):
    """Rows -> one modality of each, encoded alone: its unit-length embedding, or with `projected=False` what its
    projection reads (`RetrievalModel.embedding_inputs`)."""

    def __init__(self, model: RetrievalModel, modality: str, projected: bool = True):
        super().__init__(auto_prefix=False)
        self.model, self.modality, self.projected = model, modality, projected

    def construct(self, *inputs):
        if self.projected:
            return self.model.embed(self.modality, *inputs)
        return self.model.embedding_inputs(self.modality, *inputs)


class MatchScore(nn.Cell):
    """The cross-encoder score of rows shown with `modalities`: the "all match" logit."""

    def __init__(self, model: RetrievalModel, modalities: Tuple[str, ...]):
        super().__init__(auto_prefix=False)
        self.model, self.modalities = model, modalities

    def construct(self, *inputs):
        return self.model.match_logits(self.modalities, *inputs)[:, 0]
