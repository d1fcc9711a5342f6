"""Single-modal encoders (paper 3.1): each turns its modality's tokens into [B, L, hidden] embeddings.

Text: word + position (+ BERT's token-type 0) embeddings, LayerNorm. Vision: FC(region feature) + FC(7-d box),
LayerNorm. Audio: FC(token feature) + position embedding, LayerNorm (the paper's wav2vec tokens carry their order
inside the feature; our filterbank tokens need the position). They live side by side in one dict keyed by modality,
each built by its modality's kind (`EMBEDDINGS`: tokens, regions, frames; src/modality.py).
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from src.config import ModelConfig
from src.model.dropout import Dropout
from src.model.primitives import Dense, LayerNorm
from src.modality import BOX_DIM, Modality


class TextEmbedding(nn.Cell):
    """`word_embeddings` may be another TextEmbedding's table (the text decoder shares the encoder's)."""

    def __init__(self, vocab_size: int, hidden: int, max_positions: int, dropout: float, eps: float,
                 word_embeddings: nn.Embedding = None):
        super().__init__()
        self.word_embeddings = word_embeddings if word_embeddings is not None else nn.Embedding(vocab_size, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(2, hidden)  # BERT's segment embedding: kept for checkpoint parity
        self.norm = LayerNorm(hidden, eps)
        self.dropout = Dropout(dropout)

    def construct(self, ids, start=0):
        """ids [B, L] at positions start .. start + L - 1 (a decoder step passes its position as `start`)."""
        length = ids.shape[1]
        # position ids per row ([B, L], not [1, L]): no broadcasting add of [1, L, H] (primitives.spread)
        positions = ops.broadcast_to((ops.arange(0, length, dtype=ms.int32) + start).expand_dims(0), ids.shape)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + \
            self.token_type_embeddings(ops.zeros_like(ids))
        return self.dropout(self.norm(x))


class VisionEmbedding(nn.Cell):
    def __init__(self, feature_dim: int, hidden: int, dropout: float, eps: float):
        super().__init__()
        self.feature = Dense(feature_dim, hidden)
        self.location = Dense(BOX_DIM, hidden)
        self.norm = LayerNorm(hidden, eps)
        self.dropout = Dropout(dropout)

    def construct(self, feats, boxes):
        return self.dropout(self.norm(self.feature(feats) + self.location(boxes)))


class AudioEmbedding(nn.Cell):
    def __init__(self, feature_dim: int, hidden: int, max_positions: int, dropout: float, eps: float):
        super().__init__()
        self.feature = Dense(feature_dim, hidden)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.norm = LayerNorm(hidden, eps)
        self.dropout = Dropout(dropout)

    def construct(self, feats):
        positions = ops.broadcast_to(ops.arange(0, feats.shape[1], dtype=ms.int32).expand_dims(0), feats.shape[:2])
        return self.dropout(self.norm(self.feature(feats) + self.position_embeddings(positions)))


# modality kind -> (its spec, the data's dims (src/model/opt.DataDims), the model config) -> its embedding cell
EMBEDDINGS = {
    "tokens": lambda spec, dims, cfg: TextEmbedding(dims.vocab_size, cfg.hidden, cfg.max_positions, cfg.dropout,
                                                    cfg.layer_norm_eps),
    "regions": lambda spec, dims, cfg: VisionEmbedding(dims.feature_dims[spec.name], cfg.hidden, cfg.dropout,
                                                       cfg.layer_norm_eps),
    "frames": lambda spec, dims, cfg: AudioEmbedding(dims.feature_dims[spec.name], cfg.hidden,
                                                     dims.lengths[spec.name], cfg.dropout, cfg.layer_norm_eps),
}


def build_embedding(spec: Modality, dims, cfg: ModelConfig) -> nn.Cell:
    if spec.kind not in EMBEDDINGS:
        raise ValueError(f"modality '{spec.name}': no embedding for its kind '{spec.kind}' (known: "
                         f"{', '.join(EMBEDDINGS)})")
    return EMBEDDINGS[spec.kind](spec, dims, cfg)
