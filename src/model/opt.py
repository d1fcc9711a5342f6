"""The OPT network: single-modal embeddings keyed by modality, the cross-modal encoder over [CLS; text; image; audio],
the text decoder and the vision decoder (over dVAE codes). Heads live in `src/model/heads.py`, losses
in `src/model/losses.py`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict

import mindspore as ms
from mindspore import nn, ops

from src.config import ModelConfig
from src.modality import MODALITIES, SPECS, input_layout
from src.model.embeddings import TextEmbedding, build_embedding
from src.model.layers import NEG, DecoderLayer, Encoder, causal_bias, padding_bias



@dataclass
class DataDims:
    """What the network needs to know about the prepared data (its meta.json) and the data config."""
    vocab_size: int
    feature_dims: Dict[str, int]  # modality -> the width of its prepared features (the modalities that have them)
    mrc_classes: int
    lengths: Dict[str, int]       # modality -> its sequence budget (the data config field its spec names)
    codebook_size: int = 0        # dVAE codes the vision decoder predicts (0: no vision decoder)

    @classmethod
    def from_prepared(cls, data, data_cfg) -> "DataDims":
        return cls(data.meta["text"]["vocab_size"],
                   {m: data.feature_dim(m) for m, spec in SPECS.items() if spec.has_features},
                   data.mrc_classes, {m: getattr(data_cfg, spec.budget) for m, spec in SPECS.items()})


class TextDecoder(nn.Cell):
    """Transformer decoder over word pieces, attending to the cross-modal encoder output.

    Training runs `construct` over whole sequences. Generation runs `start_cache` once, then `step` once per new token:
    each step embeds one position, writes its keys/values into fixed-size caches and attends over them, so a token
    costs one position of work, not the whole prefix; every shape is static, so the step compiles once.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, word_embeddings: nn.Embedding = None):
        super().__init__()
        self.embedding = TextEmbedding(vocab_size, cfg.hidden, cfg.max_positions, cfg.dropout, cfg.layer_norm_eps,
                                       word_embeddings)
        self.layers = nn.CellList([DecoderLayer(cfg.hidden, cfg.heads, cfg.intermediate, cfg.dropout,
                                                cfg.layer_norm_eps) for _ in range(cfg.decoder_layers)])

    def construct(self, ids, memory, memory_mask):
        x = self.embedding(ids)
        self_bias = causal_bias(ids.shape[1])
        memory_bias = padding_bias(memory_mask)
        for layer in self.layers:
            x = layer(x, self_bias, memory, memory_bias)
        return x

    def start_cache(self, memory, memory_mask, max_len: int):
        """The caches of a generation, one (keys, values) pair per layer, each [B, heads, length, head_dim]: the
        cross-attention keys/values of the encoder output (computed once), empty self-attention ones for `max_len`
        positions; and the encoder's padding bias. Tuples of separate tensors, not one stacked tensor: stacking and
        slicing copy the whole cache every step."""
        b = memory.shape[0]
        layer0 = self.layers[0].attention
        empty = ops.zeros((b, layer0.heads, max_len, layer0.head_dim), memory.dtype)
        memory_cache = ()
        self_cache = ()
        for layer in self.layers:
            memory_cache += (layer.cross_attention.keys_values(memory),)
            self_cache += ((empty, empty),)
        return self_cache, memory_cache, padding_bias(memory_mask)

    def step(self, ids, position, self_cache, memory_cache, memory_bias):
        """ids [B, 1] at `position` (int32 scalar tensor) -> (hidden [B, 1, H], the self-attention caches with this
        position's keys/values written in)."""
        max_len = self_cache[0][0].shape[2]
        slots = ops.arange(0, max_len, dtype=ms.int32)
        slot = (slots == position).reshape(1, 1, max_len, 1)
        self_bias = ((slots > position).astype(ms.float32) * NEG).reshape(1, 1, 1, max_len)
        x = self.embedding(ids, position)
        written = ()
        for layer, (k, v), (mk, mv) in zip(self.layers, self_cache, memory_cache):
            x, k, v = layer.step(x, slot, self_bias, k, v, mk, mv, memory_bias)
            written += ((k, v),)
        return x, written


class VisionDecoder(TextDecoder):
    """The vision decoder's Transformer: the text decoder's architecture over dVAE codes, with its own embedding of
    the codebook plus a start symbol (id `codebook_size`) and `model.vision_decoder_layers` layers."""

    def __init__(self, cfg: ModelConfig, codebook_size: int):
        super().__init__(dataclasses.replace(cfg, decoder_layers=cfg.vision_decoder_layers), codebook_size + 1)
        self.start_id = codebook_size


class OPT(nn.Cell):
    """The inputs of every method are the flat tuple of the modalities' columns (src/modality.py INPUT_COLUMNS, in
    sequence order); `layout` says where each modality's are."""

    def __init__(self, cfg: ModelConfig, dims: DataDims):
        super().__init__()
        self.embeddings = nn.CellDict({m: build_embedding(spec, dims, cfg) for m, spec in SPECS.items()})
        self.layout = input_layout()
        self.encoder = Encoder(cfg.layers, cfg.hidden, cfg.heads, cfg.intermediate, cfg.dropout, cfg.layer_norm_eps)
        # the decoder reads and predicts word pieces through the encoder's table (one 30k x H table, not three)
        self.text_decoder = TextDecoder(cfg, dims.vocab_size, self.embeddings["text"].word_embeddings) \
            if cfg.decoder_layers > 0 else None
        self.vision_decoder = VisionDecoder(cfg, dims.codebook_size) \
            if cfg.vision_decoder_layers > 0 and dims.codebook_size > 0 else None

    def encode(self, *inputs):
        """[B, Lt + Nv + Na, hidden] contextual states over every modality and their mask; the text segment starts
        with [CLS]."""
        return self.encode_segments(*self.segments(MODALITIES, *inputs))

    def segments(self, modalities, *inputs):
        """The input embeddings and masks of [CLS] and the segments of `modalities` (a constant tuple), in sequence
        order: ((text or [CLS] alone, image?, audio?), their masks)."""
        parts, masks = (), ()
        for name, start, count in self.layout:
            columns = inputs[start:start + count]
            if name in modalities:
                parts = parts + (self.embeddings[name](*columns[:-1]),)
                masks = masks + (columns[-1],)
            elif start == 0:  # [CLS], the first modality's first position, heads the sequence whatever is shown
                parts = parts + (self.embeddings[name](columns[0][:, :1]),)
                masks = masks + (columns[-1][:, :1],)
        return parts, masks

    def encode_segments(self, parts, masks):
        """The encoder over `segments`' output: [B, L, hidden] states and their mask [B, L]."""
        mask = ops.concat(masks, axis=1)
        return self.encoder(ops.concat(parts, axis=1), mask), mask

    def encode_only(self, modalities, *inputs):
        """`encode` over [CLS] and the segments of `modalities` (a constant tuple) only: absent segments are left out
        of the sequence instead of masked, so an image+audio row costs 1 + Nv + Na positions. At the positions kept
        it equals `encode` with the absent modalities masked out."""
        return self.encode_segments(*self.segments(modalities, *inputs))

    def word_embedding_table(self) -> ms.Parameter:
        return self.embeddings["text"].word_embeddings.embedding_table


def with_view(layout, inputs, view):
    """`inputs` with each modality's mask multiplied by its column of `view` [B, modalities] (1: shown, 0: hidden);
    the first position ([CLS]) stays shown."""
    out = ()
    for i, (_, start, count) in enumerate(layout):
        columns = inputs[start:start + count]
        mask = columns[-1] * view[:, i:i + 1]
        if start == 0:
            mask = ops.concat((columns[-1][:, :1], mask[:, 1:]), axis=1)
        out = out + columns[:-1] + (mask,)
    return out


class DecoderCalls:
    """What src/infer/generate.py calls on a generating network (a cell with `net`, an OPT): its text decoder's, or
    with `draws_images` its vision decoder's, cache start, cached step and full pass."""
    draws_images = False

    def start_cache(self, memory, memory_mask, slots: int):
        if self.draws_images:
            return self.net.vision_decoder.start_cache(memory, memory_mask, slots)
        return self.net.text_decoder.start_cache(memory, memory_mask, slots)

    def decode_step(self, ids, position, self_cache, memory_cache, memory_bias):
        if self.draws_images:
            return self.net.vision_decoder.step(ids, position, self_cache, memory_cache, memory_bias)
        return self.net.text_decoder.step(ids, position, self_cache, memory_cache, memory_bias)

    def decode(self, ids, memory, memory_mask):
        if self.draws_images:
            return self.net.vision_decoder(ids, memory, memory_mask)
        return self.net.text_decoder(ids, memory, memory_mask)


def masked_mean(states, mask):
    """Average of the states [B, L, H] over the positions where mask [B, L] is 1: mask [B, 1, L] @ states, a batched
    product (states * mask [B, L, 1] would be a broadcasting multiply: src/model/primitives.py, spread)."""
    total = ops.matmul(mask.expand_dims(1), states.astype(mask.dtype)).squeeze(1)
    return total / ops.maximum(mask.sum(1, keepdims=True), 1.0)
