"""Text generation fine-tuning: captioning (image -> text), speech recognition (audio -> text) and image+audio -> text.

The text decoder reads the cross-modal encoder's output over [CLS] and the segments of the row's input set (the text
itself is never shown to the encoder) and is trained with teacher forcing and label smoothing; its first input is a
piece that names the caption's language (`src/data/tokenizer.py` LANGUAGE_PIECES), so decoding can ask for English
or Chinese. With several input sets in `caption.inputs`, each row shows one of them (drawn by the pipeline) and the
absent segments are masked.
Decoding is in `src/infer/generate.py`, evaluation in `src/tasks/caption_eval.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, ConfigError, ModelConfig
from src.data.pipeline import decoder_starts, open_training_data, training_data
from src.data.records import open_prepared
from src.infer.generate import Generator, text_symbols
from src.infer.graphs import GraphSet, baked_decoding, decoding_graphs
from src.modality import INPUT_COLUMNS, MODALITIES, input_index, parse_input_set
from src.model.heads import VocabHead
from src.model.losses import LabelSmoothedCrossEntropy
from src.model.opt import OPT, DataDims, DecoderCalls, with_view
from src.tasks.caption_eval import EVAL_INPUTS, describe, evaluate_run
from src.tasks.registry import Task, Training, register
from src.train.checkpoint import init_model

TEXT_IDS = input_index("text_ids")  # the caption: the decoder's targets


@dataclass
class CaptionConfig:
    """Text generation fine-tuning (`task: caption`): what the text decoder reads, and its loss."""
    # input sets, "image", "audio" or "image+audio"; with several, each training row shows one of those it has;
    # empty: every input set the training split has
    inputs: List[str] = field(default_factory=lambda: ["image"])
    # the decoder's output classes: "full" (the whole WordPiece vocabulary, through the tied word table) or "train"
    # (the pieces of the training captions and the special pieces, with the head's own output table: on the demo a
    # 4.6k softmax instead of 32.8k, and no dense 30k x hidden gradient to step)
    output_vocab: str = "full"
    # what the decoder attends to: "encoder" (the cross-modal encoder's output, as the paper) or "encoder+inputs"
    # (beside it, the image / audio input embeddings the encoder read: after a short pre-training the encoder's
    # states of different images are much alike, while their input features still tell them apart)
    memory: str = "encoder"
    weight: float = 1.0           # of the loss: the text decoder's teacher-forced cross-entropy
    label_smoothing: float = 0.1  # of that cross-entropy




def parse_sources(names: Sequence[str], where: str = "caption.inputs") -> Tuple[Tuple[str, ...], ...]:
    """["image", "image+audio"] -> (("image",), ("image", "audio")), modalities in the model's order."""
    if not names:
        raise ConfigError(f"{where}: no input set (image, audio or image+audio) that the data has")
    sources = []
    for name in names:
        try:
            sources.append(parse_input_set(name, where, allowed=("image", "audio")))
        except ValueError as e:
            raise ConfigError(f"{e}; the decoder reads image and/or audio") from None
    return tuple(sources)


class CaptionModel(DecoderCalls, nn.Cell):
    """The OPT network (with its text decoder) and the decoder's output head. The head is the pre-training DTR head
    (`dtr_head`, the same task: text from the encoder output), so a pre-trained checkpoint initialises all of it."""

    def __init__(self, model_cfg: ModelConfig, dims: DataDims, output_ids=None, memory: str = "encoder"):
        """`output_ids`: the pieces the decoder may emit (`output_pieces`); None: the whole vocabulary. `memory`:
        caption.memory."""
        super().__init__()
        if memory not in MEMORIES:
            raise ConfigError(f"caption.memory must be one of {', '.join(MEMORIES)}, got '{memory}'")
        self.read_inputs = memory == "encoder+inputs"
        if model_cfg.decoder_layers < 1:
            raise ConfigError("text generation needs a text decoder: model.decoder_layers must be at least 1")
        self.net = OPT(model_cfg, dims)
        self.dtr_head = VocabHead(model_cfg.hidden, dims.vocab_size, model_cfg.layer_norm_eps, transform=False,
                                  output_ids=output_ids)
        self.decoder_layers = model_cfg.decoder_layers

    def memory(self, modalities, *inputs):
        """What the decoder attends to, and its mask: the encoder output over [CLS] and the segments of `modalities`
        (a constant tuple), with caption.memory encoder+inputs followed by those segments' input embeddings."""
        parts, masks = self.net.segments(modalities, *inputs)
        states, mask = self.net.encode_segments(parts, masks)
        if not self.read_inputs:
            return states, mask
        # the segments after the first ([CLS] or text) are the image / audio input embeddings, computed once
        return ops.concat((states,) + parts[1:], axis=1), ops.concat((mask,) + masks[1:], axis=1)

    def class_log_probs(self, hidden):
        """Decoder states [..., H] -> log-probabilities over the head's classes [N, K]."""
        return ops.log_softmax(self.dtr_head(hidden, self.net.word_embedding_table()), axis=-1)

    def output_symbols(self):
        """The sorted piece ids the head predicts (its classes), or None for the whole vocabulary."""
        return self.dtr_head.output_ids

    def log_probs(self, hidden):
        """Decoder states [..., H] -> log-probabilities over the vocabulary [N, V]."""
        return self.dtr_head.over_vocabulary(self.class_log_probs(hidden))



OUTPUT_VOCABS = ("full", "train")
MEMORIES = ("encoder", "encoder+inputs")


def output_pieces(cfg: Config, data, trained=None):
    """The decoder's output pieces under `caption.output_vocab`: None (the whole vocabulary), or the sorted ids of the
    pieces in the training captions plus the special pieces ([SEP] ends a caption, [PAD]/[CLS]/[MASK] are banned by
    decoding). `trained`: a trained model's own (stored in its checkpoint), which evaluation and inference on any
    other set use."""
    choice = cfg.caption.output_vocab
    if choice not in OUTPUT_VOCABS:
        raise ConfigError(f"caption.output_vocab must be one of {', '.join(OUTPUT_VOCABS)}, got '{choice}'")
    if choice == "full":
        return None
    if trained is not None:
        return np.asarray(trained, np.int32)
    special = list(data.meta["text"]["special_ids"].values())
    return np.union1d(data.text_pieces(cfg.data.train_split), special).astype(np.int32)


def load_trained(cfg: Config, ckpt):
    """(CaptionModel in inference mode with the checkpoint's weights, the prepared data of cfg.data.path)."""
    from src.train.checkpoint import load_weights
    from src.train.checkpoint import read_parameter
    data = open_prepared(cfg.data.path)
    trained = read_parameter(ckpt, "dtr_head.output_ids") if cfg.caption.output_vocab == "train" else None
    output_ids = output_pieces(cfg, data, trained)
    model = CaptionModel(cfg.model, DataDims.from_prepared(data, cfg.data), output_ids,
                         cfg.caption.memory)
    load_weights(model, ckpt, ("net.", "dtr_head."))
    model.set_train(False)
    return model, data


class CaptionLoss(nn.Cell):
    """Batch columns (CAPTION_COLUMNS) -> (weighted loss, [caption loss]): the captioning network (`model`) with its
    label-smoothed loss. Parameter names are the network's (net.*, dtr_head.*)."""

    def __init__(self, model_cfg: ModelConfig, settings: CaptionConfig, dims: DataDims, sources, output_ids=None):
        super().__init__(auto_prefix=False)
        self.model = CaptionModel(model_cfg, dims, output_ids, settings.memory)
        # the encoder sees the union of the input sets; the pipeline's view masks what a row does not show
        self.modalities = tuple(m for m in MODALITIES if any(m in s for s in sources))
        self.weight = settings.weight
        self.cross_entropy = LabelSmoothedCrossEntropy(settings.label_smoothing)
        self.initialised = tuple(init_model(self, model_cfg.init_from))
        head = self.model.dtr_head
        if output_ids is not None and head.table.name not in self.initialised:
            head.init_table(self.model.net.word_embedding_table())  # from the pieces' pre-trained embeddings
            self.initialised += (head.table.name,)

    def construct(self, *batch):  # CAPTION_COLUMNS: the inputs, then view, row_weight, decoder_start
        inputs = batch[:len(INPUT_COLUMNS)]
        view, row_weight, decoder_start = batch[len(INPUT_COLUMNS):]
        memory, memory_mask = self.model.memory(self.modalities, *with_view(self.model.net.layout, inputs, view))
        text_ids = inputs[TEXT_IDS]
        # <language> w1 .. wn -> w1 .. wn [SEP]: the start piece in place of [CLS] names the language to generate
        inputs = ops.concat((decoder_start.expand_dims(1), text_ids[:, 1:-1]), axis=1)
        targets = text_ids[:, 1:]
        log_probs = self.model.class_log_probs(self.model.net.text_decoder(inputs, memory, memory_mask))
        flat = self.model.dtr_head.classes_of(targets).reshape(-1)
        weights = ((targets > 0).astype(ms.float32) * row_weight.expand_dims(1)).reshape(-1)
        loss = self.cross_entropy(log_probs, flat, weights)
        return loss * self.weight, ops.stack((loss,))


def input_sets_of(present: Sequence[str]) -> List[str]:
    """caption.inputs when none is named: every input set of image and audio that the data has."""
    has = [m for m in ("image", "audio") if m in present]
    return has + (["+".join(has)] if len(has) == 2 else [])


def build(cfg: Config, num_shards: int = 1, shard_id: int = 0):
    """(loss cell, make_dataset(epoch, start_batch), batches per epoch) for `src.train.trainer.fit`."""
    data = open_training_data(cfg.data)
    sources = parse_sources(cfg.caption.inputs or input_sets_of(data.modalities(cfg.data.train_split)))
    indices = tuple(tuple(MODALITIES.index(m) for m in s) for s in sources)
    make_dataset, per_epoch = training_data(data, cfg.data, "caption", num_shards, shard_id, sources=indices,
                                            starts=decoder_starts(data, cfg.data.train_split))
    loss_net = CaptionLoss(cfg.model, cfg.caption, DataDims.from_prepared(data, cfg.data), sources,
                           output_pieces(cfg, data))
    return loss_net, make_dataset, per_epoch


def caption_graphs(cfg: Config, ckpt) -> GraphSet:
    """`start_<inputs>` for image, audio and image+audio (encoder output -> the decoder's caches) and `step` (one
    decoding step with the caches -> top-k candidates and the updated caches), with cfg.generate's settings."""
    model, data = load_trained(cfg, ckpt)
    text = data.meta["text"]
    symbols = text_symbols(text["special_ids"], text["vocab_size"])
    graphs = decoding_graphs(lambda m: Generator(model, m, cfg.generate, symbols, cfg.model.max_positions),
                             EVAL_INPUTS.values())
    return GraphSet(graphs, baked_decoding(cfg.generate, text["vocab_size"], cfg.model.decoder_layers))


register(Task("caption", __name__, settings=CaptionConfig,
              renamed={"loss.caption": "caption.weight", "loss.label_smoothing": "caption.label_smoothing"},
              training=Training(build, ("caption",)), graphs=caption_graphs, evaluate=evaluate_run, infer=describe,
              infer_from=("caption",), help="image -> text: BLEU, CIDEr-D, WER, CER beside the nearest neighbour"))
register(Task("asr", __name__, evaluate=evaluate_run, graphs_of="caption", help="audio -> text"))
register(Task("caption_ia", __name__, evaluate=evaluate_run, graphs_of="caption", help="image+audio -> text"))
