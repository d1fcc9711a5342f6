"""Transformer building blocks: multi-head attention, BERT encoder layer (post-LN), decoder layer with cross-attention.

Classic `nn.*` / `ops.*` only: most `mint.*` ops are missing on CPU in graph mode (MindSpore 2.10). Masks are additive
biases ([B, 1, Lq, Lk], 0 where attention is allowed, -10000 elsewhere), built once per forward pass.
"""
from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.model.dropout import Dropout
from src.model.primitives import BatchProduct, GELUDense, Dense, LayerNorm, Softmax, spread

NEG = -10000.0  # BERT's additive mask value: exp() underflows to 0 without the NaNs of -inf on fully masked rows


def padding_bias(mask: ms.Tensor) -> ms.Tensor:
    """[B, Lk] float mask (1 = token) -> [B, 1, 1, Lk] additive attention bias."""
    return ((1.0 - mask) * NEG).expand_dims(1).expand_dims(1)


def causal_bias(length: int) -> ms.Tensor:
    """[1, 1, L, L] additive bias that lets position i attend to positions <= i."""
    upper = np.triu(np.ones((length, length), np.float32), k=1)
    return ms.Tensor(upper * NEG).reshape(1, 1, length, length)


class Attention(nn.Cell):
    """Multi-head attention; keys/values may come from another sequence (cross-attention)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {heads} heads")
        self.heads, self.head_dim = heads, hidden // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = Dense(hidden, hidden)
        self.key = Dense(hidden, hidden)
        self.value = Dense(hidden, hidden)
        self.output = Dense(hidden, hidden)
        self.softmax = Softmax()
        self.scores = BatchProduct(transpose_b=True)  # q k^T without a transposed copy of k
        self.weighted = BatchProduct()  # probs v
        self.dropout = Dropout(dropout)

    def split(self, x):
        """[B, L, H] -> [B, heads, L, head_dim] by Split and Stack: MindSpore 2.10's CPU Transpose keeps an 8-byte
        source index per element for as long as its graph lives (1.6 GB of the demo retrieval step); these copy."""
        return ops.stack(ops.split(x, self.head_dim, axis=-1), axis=1)

    def construct(self, x, memory, bias):
        k, v = self.keys_values(memory)
        return self.attend(x, k, v, bias)

    def keys_values(self, memory):
        """[B, Lk, H] -> keys and values split by head, [B, heads, Lk, head_dim] each (cacheable)."""
        return self.split(self.key(memory)), self.split(self.value(memory))

    def attend(self, x, k, v, bias):
        q = self.split(self.query(x) * self.scale)  # scaled before the product: [B, L, H] kept for the backward in
        scores = self.scores(q, k)  # place of [B, heads, L, L] (docs/performance.md, Memory)
        scores = scores + spread(bias, scores)  # bias [B or 1, 1, Lq or 1, Lk]: see spread
        probs = self.dropout(self.softmax(scores)).astype(v.dtype)  # float32 softmax, float16 values under O2
        context = ops.concat(ops.unstack(self.weighted(probs, v), axis=1), axis=-1)  # [B, Lq, H]: see split
        return self.output(context)


class FeedForward(nn.Cell):
    """Dense -> exact GELU (as nn.GELU(approximate=False)) -> Dense. The activation and the output layer run as one
    cell (primitives.GELUDense) that recomputes the activation in the backward; `output` holds its parameters."""

    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.intermediate = Dense(hidden, intermediate)
        self.output = Dense(intermediate, hidden)
        self.activated_output = GELUDense()

    def construct(self, x):
        u = self.intermediate(x)
        shape = u.shape
        y = self.activated_output(u.reshape(-1, shape[-1]), self.output.weight.astype(u.dtype), self.output.bias)
        return y.reshape(shape[:-1] + (y.shape[-1],))


class EncoderLayer(nn.Cell):
    """BERT block: x -> LN(x + Attn(x)) -> LN(h + FFN(h))."""

    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float, eps: float):
        super().__init__()
        self.attention = Attention(hidden, heads, dropout)
        self.attention_norm = LayerNorm(hidden, eps)
        self.ffn = FeedForward(hidden, intermediate)
        self.output_norm = LayerNorm(hidden, eps)
        self.dropout = Dropout(dropout)

    def construct(self, x, bias):
        h = self.attention_norm(x + self.dropout(self.attention(x, x, bias)))
        return self.output_norm(h + self.dropout(self.ffn(h)))


class DecoderLayer(nn.Cell):
    """Post-LN Transformer decoder block: causal self-attention, cross-attention to the encoder output, FFN."""

    def __init__(self, hidden: int, heads: int, intermediate: int, dropout: float, eps: float):
        super().__init__()
        self.attention = Attention(hidden, heads, dropout)
        self.attention_norm = LayerNorm(hidden, eps)
        self.cross_attention = Attention(hidden, heads, dropout)
        self.cross_attention_norm = LayerNorm(hidden, eps)
        self.ffn = FeedForward(hidden, intermediate)
        self.output_norm = LayerNorm(hidden, eps)
        self.dropout = Dropout(dropout)

    def construct(self, x, self_bias, memory, memory_bias):
        h = self.attention_norm(x + self.dropout(self.attention(x, x, self_bias)))
        h = self.cross_attention_norm(h + self.dropout(self.cross_attention(h, memory, memory_bias)))
        return self.output_norm(h + self.dropout(self.ffn(h)))

    def step(self, x, slot, self_bias, cache_k, cache_v, memory_k, memory_v, memory_bias):
        """One new position x [B, 1, H]: its keys/values are written into the caches [B, heads, T, head_dim] where
        the boolean `slot` [1, 1, T, 1] is set; attention reads the cache (future slots are masked by `self_bias`)."""
        k, v = self.attention.keys_values(x)
        cache_k = ops.where(slot, k, cache_k)
        cache_v = ops.where(slot, v, cache_v)
        h = self.attention_norm(x + self.attention.attend(x, cache_k, cache_v, self_bias))
        h = self.cross_attention_norm(h + self.cross_attention.attend(h, memory_k, memory_v, memory_bias))
        return self.output_norm(h + self.ffn(h)), cache_k, cache_v


class Encoder(nn.Cell):
    def __init__(self, layers: int, hidden: int, heads: int, intermediate: int, dropout: float, eps: float):
        super().__init__()
        self.layers = nn.CellList([EncoderLayer(hidden, heads, intermediate, dropout, eps) for _ in range(layers)])

    def construct(self, x, mask):
        bias = padding_bias(mask)
        for layer in self.layers:
            x = layer(x, bias)
        return x
