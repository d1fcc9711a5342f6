"""Start from a BERT-family checkpoint: map HuggingFace `safetensors` weights onto our cells.

The word/position/token-type embeddings and every encoder layer map one to one (dense weights need no transpose:
both frameworks store [out, in]). Where shapes allow, the decoders' self-attention and FFN start from the encoder
layer of the same index.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

import mindspore as ms
import numpy as np

from src.data.tokenizer import minilm_dir

_EMBEDDING = {
    "embeddings.word_embeddings.weight": "word_embeddings.embedding_table",
    "embeddings.position_embeddings.weight": "position_embeddings.embedding_table",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.embedding_table",
    "embeddings.LayerNorm.weight": "norm.gamma",
    "embeddings.LayerNorm.bias": "norm.beta",
}
_LAYER = {
    "attention.self.query": "attention.query", "attention.self.key": "attention.key",
    "attention.self.value": "attention.value", "attention.output.dense": "attention.output",
    "attention.output.LayerNorm": "attention_norm", "intermediate.dense": "ffn.intermediate",
    "output.dense": "ffn.output", "output.LayerNorm": "output_norm",
}
_SUFFIX = {"weight": "weight", "bias": "bias"}
_NORM_SUFFIX = {"weight": "gamma", "bias": "beta"}


def resolve_checkpoint(path: str) -> str:
    p = str(minilm_dir() / "model.safetensors") if path == "minilm" else path
    if not Path(p).is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    return p


def bert_to_ours(hf_name: str, text_prefix: str, encoder_prefix: str):
    """Our parameter name for a HuggingFace BERT weight, or None for weights we do not use (pooler, position ids)."""
    if hf_name in _EMBEDDING:
        return f"{text_prefix}.{_EMBEDDING[hf_name]}"
    m = re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", hf_name)
    if not m or m.group(2) not in _LAYER:
        return None
    ours = _LAYER[m.group(2)]
    suffix = (_NORM_SUFFIX if ours.endswith("norm") else _SUFFIX)[m.group(3)]
    return f"{encoder_prefix}.{m.group(1)}.{ours}.{suffix}"


def _extends_vocabulary(name: str, ours: tuple, theirs: tuple) -> bool:
    return name.endswith("word_embeddings.embedding_table") and len(ours) == len(theirs) == 2 and \
        ours[1] == theirs[1] and ours[0] > theirs[0]


def load_bert_weights(net: ms.nn.Cell, path: str, text_prefix: str, encoder_prefix: str,
                      decoder_prefixes: Tuple[str, ...] = ()) -> Dict[str, List[str]]:
    """Copy a BERT checkpoint into `net`; returns what was loaded and what was skipped (with why)."""
    from safetensors.numpy import load_file
    weights = load_file(resolve_checkpoint(path))
    params = dict(net.parameters_and_names())  # names by path: a shared table answers to its first path
    loaded, skipped = [], []

    def put(name: str, value: np.ndarray, source: str) -> None:
        p = params.get(name)
        if p is None:
            skipped.append(f"{source}: no parameter {name}")
        elif _extends_vocabulary(name, tuple(p.shape), value.shape):
            # a vocabulary extended past the checkpoint's (the demo's adds Chinese pieces after MiniLM's 30,522):
            # the checkpoint's rows first, the new pieces keep their initialisation
            table = p.asnumpy()
            table[:value.shape[0]] = value
            p.set_data(ms.Tensor(table.astype(np.float32)))
            loaded.append(name)
        elif tuple(p.shape) != value.shape:
            skipped.append(f"{source}: shape {value.shape} != {tuple(p.shape)} of {name}")
        else:
            p.set_data(ms.Tensor(value.astype(np.float32)))
            loaded.append(name)

    for hf_name, value in weights.items():
        ours = bert_to_ours(hf_name, text_prefix, encoder_prefix)
        if ours is None:
            continue
        put(ours, value, hf_name)
        if ours.startswith(encoder_prefix):
            for prefix in decoder_prefixes:
                target = prefix + ours[len(encoder_prefix):]
                if target in params:  # decoder self-attention, its norm and the FFN share the encoder's layout
                    put(target, value, hf_name)
    if not any(name.startswith(encoder_prefix) for name in loaded):
        raise ValueError(f"{path}: no encoder weight fits the model ({len(skipped)} skipped, e.g. "
                         f"{skipped[:2]}); check model.hidden/heads/intermediate against the checkpoint")
    return {"loaded": loaded, "skipped": skipped}
