"""Text-to-image: the vision decoder (trained by DIR during pre-training) samples the dVAE codes of an image, top-k,
with a key/value cache, from the cross-modal encoder's output over a caption (and optionally its audio); the frozen
dVAE decoder of stage 1 turns the codes into pixels.

Evaluation (`eval.py --task t2i`) writes every generated image as a PNG and a contact sheet of generated images under
their ground truth, and measures R-precision: each generated image must rank its own caption first among
`t2i.candidates` captions of the split, scored by a retrieval model's embeddings (t2i.scorer; the cosine of the
caption's and the image's) or, for a checkpoint without retrieval heads, its matching head on each pair. The image's
region features are computed from the generated pixels exactly as the prepared data's were from the source images;
the same is done with the ground-truth thumbnails, which bounds what the generator could reach at this resolution.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from mindspore import nn, ops

from src.config import Config, ConfigError, GenerateConfig, ModelConfig, PrepareConfig, from_dict
from src.data.extractors import IMAGE_EXTRACTORS, image_feature_dim, image_regions_batch
from src.data.pipeline import as_stored, standardize
from src.data.records import DatasetError, open_prepared
from src.infer.generate import Generator, Symbols, generate_rows
from src.infer.items import Items, content_codes, load_items, run_batched
from src.model.opt import MODALITIES, OPT, DataDims
from src.tasks.dvae import image_grid, to_uint8, write_png

INPUT_SETS = {"text": ("text",), "text+audio": ("text", "audio")}


def input_set(cfg: Config) -> tuple:
    if cfg.t2i.inputs not in INPUT_SETS:
        raise ConfigError(f"t2i.inputs '{cfg.t2i.inputs}' is unknown (known: {', '.join(INPUT_SETS)})")
    return INPUT_SETS[cfg.t2i.inputs]


class TextToImageModel(nn.Cell):
    """The OPT network with its vision decoder and the DIR head over the codebook, named as in the pre-training cell
    (net.*, dir_head.*) so a checkpoint pre-trained with DIR loads into it directly."""

    def __init__(self, model_cfg: ModelConfig, dims: DataDims):
        super().__init__()
        if model_cfg.vision_decoder_layers < 1 or dims.codebook_size < 1:
            raise ConfigError("text-to-image needs a vision decoder: model.vision_decoder_layers >= 1 and a codebook")
        self.net = OPT(model_cfg, dims)
        self.dir_head = nn.Dense(model_cfg.hidden, dims.codebook_size)
        self.decoder_layers = model_cfg.vision_decoder_layers

    def memory(self, modalities, text_ids, text_mask, image_feat, image_boxes, image_mask, audio_feat, audio_mask):
        """The encoder output the decoder attends to: [CLS] and the segments of `modalities` (a constant tuple)."""
        return self.net.encode_only(modalities, text_ids, text_mask, image_feat, image_boxes, image_mask, audio_feat,
                                    audio_mask)

    def log_probs(self, hidden):
        """Decoder states [..., H] -> log-probabilities over the codebook [N, codebook]."""
        return ops.log_softmax(self.dir_head(hidden.reshape(-1, hidden.shape[-1])), axis=-1)

    # the decoder, as src/infer/generate.py drives it
    def start_cache(self, memory, memory_mask, slots: int):
        return self.net.vision_decoder.start_cache(memory, memory_mask, slots)

    def decode_step(self, ids, position, self_cache, memory_cache, memory_bias):
        return self.net.vision_decoder.step(ids, position, self_cache, memory_cache, memory_bias)

    def decode(self, ids, memory, memory_mask):
        return self.net.vision_decoder(ids, memory, memory_mask)


class CodesToImages(nn.Cell):
    """codes [B, grid^2] -> images [B, S, S, 3] in [0, 1], by the frozen dVAE decoder."""

    def __init__(self, dvae):
        super().__init__(auto_prefix=False)
        self.dvae = dvae

    def construct(self, codes):
        return ops.clamp(self.dvae.decode_codes(codes), 0.0, 1.0)


def image_symbols(codebook_size: int) -> Symbols:
    """Codes 0..codebook-1; the start symbol is the vision decoder's extra id; an image has no end symbol."""
    return Symbols(codebook_size, start=codebook_size)


def sampling_config(cfg: Config, codes_per_image: int) -> GenerateConfig:
    t = cfg.t2i
    return GenerateConfig(strategy="sample", max_len=codes_per_image + 1, top_k=t.top_k, top_p=t.top_p,
                          temperature=t.temperature, seed=t.seed, batch_size=t.batch_size)


@dataclass
class ImageGenerator:
    """Caption inputs -> (codes [N, grid^2], images [N, S, S, 3] in [0, 1]): sampled codes, then decoded."""
    generator: Generator
    codes_to_images: Callable  # a CodesToImages cell or its exported graph

    def __call__(self, count: int, make_inputs: Callable[[np.ndarray], Sequence[np.ndarray]]):
        codes = np.asarray(generate_rows(self.generator, count, make_inputs), np.int32)
        batch = self.generator.cfg.batch_size
        return codes, run_batched(self.codes_to_images, count, batch, lambda rows: (codes[rows],))[0]


def image_generator(model: TextToImageModel, dvae, cfg: Config, modalities, use_cache: bool = True
                    ) -> ImageGenerator:
    generator = Generator(model, modalities, sampling_config(cfg, dvae.grid ** 2),
                          image_symbols(cfg.dvae.codebook_size), cfg.model.max_positions, use_cache)
    return ImageGenerator(generator, CodesToImages(dvae))


def load_trained(cfg: Config, ckpt):
    """(TextToImageModel with the checkpoint's weights, the frozen dVAE named by dvae.checkpoint, the prepared data)."""
    from src.tasks import dvae as dvae_task
    from src.train.checkpoint import load_run_config, load_weights, resolve_checkpoint
    if cfg.loss.dir <= 0 or cfg.model.vision_decoder_layers < 1:
        raise ConfigError(f"{ckpt}: trained without DIR (loss.dir {cfg.loss.dir}, model.vision_decoder_layers "
                          f"{cfg.model.vision_decoder_layers}): text-to-image needs a pre-training run with "
                          "loss.dir > 0, whose vision decoder draws")
    if not cfg.dvae.checkpoint:
        raise ConfigError(f"{ckpt}: its config names no dVAE (dvae.checkpoint) to decode the codes with; give the one "
                          "whose codes it was pre-trained on: --set dvae.checkpoint=RUN")
    dvae_cfg = load_run_config(cfg.dvae.checkpoint, overrides=[f"data.path={cfg.data.path}"])
    if dvae_cfg.dvae.codebook_size != cfg.dvae.codebook_size:
        raise ConfigError(f"dvae.checkpoint {cfg.dvae.checkpoint} has a codebook of {dvae_cfg.dvae.codebook_size} "
                          f"codes, but {ckpt} predicts {cfg.dvae.codebook_size}")
    dvae, data = dvae_task.load_trained(dvae_cfg, resolve_checkpoint(cfg.dvae.checkpoint))
    dims = dataclasses.replace(DataDims.from_prepared(data, cfg.data.max_audio_tokens),
                               codebook_size=cfg.dvae.codebook_size)
    model = TextToImageModel(cfg.model, dims)
    load_weights(model, ckpt, ("net.", "dir_head."))
    model.set_train(False)
    return model, dvae, data


def load_generator(cfg: Config, modalities, ckpt=None, exported=None):
    """(ImageGenerator, prepared data) from a checkpoint, or from `exported` (a t2i export's ExportedGraphs)."""
    if exported is not None:
        return exported.image_generator(modalities, cfg), open_prepared(cfg.data.path)
    model, dvae, data = load_trained(cfg, ckpt)
    return image_generator(model, dvae, cfg, modalities), data


# ----------------------------------------------------------------------------------------------------------------------
# Pixels -> the encoder's image inputs, and R-precision
# ----------------------------------------------------------------------------------------------------------------------
def pixel_region_inputs(images: np.ndarray, data, cfg: Config) -> tuple:
    """Images [N, S, S, 3] in [0, 1] -> (image_feat, image_boxes, image_mask) padded and standardised as the pipeline
    does it, with the image extractor of the prepared data's settings."""
    prep = from_dict(PrepareConfig, data.meta["prepare"], where=str(data.root)).image
    extractor = (data.meta["image"].get("extractor") or {}).get("name")
    if extractor not in IMAGE_EXTRACTORS or data.image_dim != image_feature_dim(prep):
        raise DatasetError(f"{data.root}: its image features are {data.image_dim}-d precomputed regions; generated "
                           "pixels can only be scored through an extractor that preparation runs "
                           f"({', '.join(IMAGE_EXTRACTORS)})")
    n, nv = len(images), cfg.data.max_regions
    feat = np.zeros((n, nv, data.image_dim), np.float32)
    boxes = np.zeros((n, nv, 7), np.float32)
    mask = np.zeros((n, nv), np.float32)
    stats = data.standardizer("image")
    for start in range(0, n, 32):
        chunk = [to_uint8(image) for image in images[start:start + 32]]
        for i, regions in enumerate(image_regions_batch(chunk, prep), start):
            r = min(len(regions.features), nv)
            feat[i, :r] = standardize(as_stored(regions.features[:r]), stats)
            boxes[i, :r], mask[i, :r] = regions.boxes[:r], 1.0
    return feat, boxes, mask


def caption_candidates(text_codes: np.ndarray, rows: np.ndarray, count: int, rng) -> np.ndarray:
    """[len(rows), count] item indices: each row itself, then count - 1 items with a different caption (text_codes
    equal means the same caption), drawn without replacement. `count` is cut to what every row can have."""
    distinct = len(np.unique(text_codes))
    count = min(count, distinct)
    out = np.empty((len(rows), count), np.int64)
    for i, row in enumerate(rows):
        others = np.flatnonzero(text_codes != text_codes[row])
        out[i, 0] = row
        out[i, 1:] = rng.choice(others, count - 1, replace=False)
    return out


def own_caption_ranks(scores: np.ndarray) -> np.ndarray:
    """scores [N, C], column 0 the own caption's: its rank (0 = first; ties count against it)."""
    return (scores[:, 1:] >= scores[:, :1]).sum(1)


def colour_agreement(generated: np.ndarray, truth: np.ndarray, same_image: np.ndarray) -> float:
    """How often a generated image's mean colour is nearer its own ground truth's than another item's (pairs of items
    with different images; 0.5 is chance): a coarse check that the caption steers the picture."""
    g, t = generated.mean((1, 2)), truth.mean((1, 2))
    distance = np.linalg.norm(g[:, None] - t[None], axis=-1)  # [generated, truth]
    nearer = distance < np.diag(distance)[:, None]  # another truth nearer than the own one
    tied = distance == np.diag(distance)[:, None]
    other = ~same_image
    return float(1.0 - ((nearer + 0.5 * tied) * other).sum() / max(other.sum(), 1))


def first_of_each(codes: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct value, in order."""
    return np.sort(np.unique(codes, return_index=True)[1])


def pair_inputs(items: Items, text_rows: np.ndarray, image_inputs: tuple, image_rows: np.ndarray) -> tuple:
    """Model inputs pairing the captions of items `text_rows` with the images `image_rows` of `image_inputs`
    (image_feat, image_boxes, image_mask); the audio is item 0's, never shown to the encoder."""
    audio = (items.inputs["audio_feat"][:1], items.inputs["audio_mask"][:1])
    return (items.inputs["text_ids"][text_rows], items.inputs["text_mask"][text_rows],
            *(x[image_rows] for x in image_inputs), *(np.repeat(a, len(text_rows), 0) for a in audio))


class MatchingScorer:
    """(caption, image) scores by the cross-encoder: the matching head's "all match" logit over each pair, one
    encoder pass per pair (the score of a checkpoint without retrieval projections, e.g. a pre-training run)."""

    def __init__(self, model, batch_size: int):
        from src.tasks.retrieval_eval import MatchScore
        self.cell, self.batch_size = MatchScore(model, ("text", "image")), batch_size

    def __call__(self, items: Items, candidates: np.ndarray, image_inputs: tuple) -> np.ndarray:
        """[N, C] scores of image i (image_inputs row i) with the caption of item candidates[i, c]."""
        n, c = candidates.shape
        return run_batched(self.cell, n * c, self.batch_size,
                           lambda pairs: pair_inputs(items, candidates.reshape(-1)[pairs], image_inputs,
                                                     pairs // c))[0].reshape(n, c)


class EmbeddingScorer:
    """(caption, image) scores by a retrieval model's first stage: the cosine of the caption's and the image's
    embeddings, each computed once (as R-precision is usually measured, with a retrieval model's embeddings)."""

    def __init__(self, model, batch_size: int):
        from src.tasks.retrieval_eval import ModalityEmbedding
        self.cells = {m: ModalityEmbedding(model, m) for m in ("text", "image")}
        self.batch_size = batch_size

    def __call__(self, items: Items, candidates: np.ndarray, image_inputs: tuple) -> np.ndarray:
        captions, where = np.unique(candidates, return_inverse=True)
        text = run_batched(self.cells["text"], len(captions), self.batch_size,
                           lambda rows: pair_inputs(items, captions[rows], image_inputs, rows * 0))[0]
        image = run_batched(self.cells["image"], len(candidates), self.batch_size,
                            lambda rows: pair_inputs(items, rows * 0, image_inputs, rows))[0]
        return np.einsum("nd,ncd->nc", image, text[where.reshape(candidates.shape)])


def load_scorer(cfg: Config, default_ckpt):
    """The scorer of (caption, image) pairs: t2i.scorer's model, else `default_ckpt`'s, each with its own model
    config; a retrieval run scores by its embeddings (EmbeddingScorer), any other by its matching head."""
    from src.tasks.retrieval import load_trained as load_retrieval
    from src.train.checkpoint import load_run_config
    scorer_cfg = load_run_config(cfg.t2i.scorer, overrides=[f"data.path={cfg.data.path}"]) if cfg.t2i.scorer else cfg
    ckpt = cfg.t2i.scorer or default_ckpt
    if scorer_cfg.task == "retrieval":
        model, _ = load_retrieval(scorer_cfg, ckpt, ("net.", "projections."))
        return EmbeddingScorer(model, cfg.eval.batch_size)
    model, _ = load_retrieval(scorer_cfg, ckpt, ("net.", "match_head."))
    return MatchingScorer(model, cfg.eval.batch_size)


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------------
def evaluation_items(data, cfg: Config, split: str, modalities, limit: int = 0):
    """(items of the split, the rows that have every input of `modalities`, an image and a ground-truth thumbnail,
    those thumbnails)."""
    from src.data.thumbnails import load_thumbnails
    items = load_items(data, cfg.data, split)
    needed = [MODALITIES.index(m) for m in set(modalities) | {"text", "image"}]
    index, thumbs = load_thumbnails(data, split, cfg=cfg.data)
    has_thumb = np.isin(items.index, index)
    usable = np.flatnonzero(items.present()[:, needed].all(1) & has_thumb)
    if len(usable) == 0:
        raise DatasetError(f"{data.root}: split '{split}' has no item with {' + '.join(modalities)} and an image")
    usable = usable[:limit] if limit > 0 else usable
    position = {int(s): i for i, s in enumerate(index)}
    return items, usable, thumbs[[position[int(items.index[r])] for r in usable]]


def split_candidates(items: Items, rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """[len(rows), C] item indices of the captions each row's image ranks: its own first, then others drawn from
    every captioned item of the split (caption_candidates)."""
    text_rows = np.flatnonzero(items.present()[:, 0])
    text_codes = content_codes(items.subset(text_rows), ("text",))
    position = {int(r): i for i, r in enumerate(text_rows)}
    own = np.array([position[int(r)] for r in rows])
    return text_rows[caption_candidates(text_codes, own, count, np.random.default_rng(seed))]


def evaluate_text_to_image(generate: ImageGenerator, scorer, data, cfg: Config, split: str, limit: int = 0,
                           out_dir: Optional[Path] = None) -> dict:
    """Generate an image for each usable item of `split` (the first `limit`), score R-precision against the ground
    truth's, and with `out_dir` write the PNGs (t2i_<split>/<id>.png) and the contact sheet (t2i_<split>.png)."""
    modalities = input_set(cfg)
    items, usable, truth = evaluation_items(data, cfg, split, modalities, limit)
    started = time.perf_counter()
    codes, images = generate(len(usable), lambda rows: items.compose({m: usable[rows] for m in modalities}))
    seconds = time.perf_counter() - started

    candidates = split_candidates(items, usable, cfg.t2i.candidates, cfg.t2i.seed)
    ranks = {}
    for name, pixels in (("generated", images), ("ground_truth", truth)):
        ranks[name] = own_caption_ranks(scorer(items, candidates, pixel_region_inputs(pixels, data, cfg)))
    ids = data.read_columns(split, ["id", "text"])
    image_codes = content_codes(items.subset(usable), ("image",))  # an image with two captions is shown once
    report = {"inputs": cfg.t2i.inputs, "items": len(usable), "candidates": candidates.shape[1],
              "r_precision": float((ranks["generated"] == 0).mean()),
              "r_precision_ground_truth": float((ranks["ground_truth"] == 0).mean()),
              "chance": 1.0 / candidates.shape[1],
              "colour_agreement": colour_agreement(images, truth, image_codes[:, None] == image_codes[None]),
              "seconds": seconds, "images_per_second": len(usable) / seconds,
              "codes_used": int(len(np.unique(codes))), "codebook_size": cfg.dvae.codebook_size,
              "sampling": {k: getattr(cfg.t2i, k) for k in ("top_k", "top_p", "temperature", "seed")}}
    sample_ids = [ids["id"][int(items.index[r])] for r in usable]
    report["predictions"] = [{"id": sid, "text": ids["text"][int(items.index[r])], "rank": int(rank)}
                             for sid, r, rank in zip(sample_ids, usable, ranks["generated"])]
    if out_dir is not None:
        shown = first_of_each(image_codes)[:cfg.t2i.sheet]
        report.update(write_images(Path(out_dir), split, images, sample_ids, truth[shown], images[shown]))
    return report


def write_images(out_dir: Path, split: str, images: np.ndarray, ids, truth: np.ndarray, generated: np.ndarray
                 ) -> dict:
    """Each generated image as <id>.png in t2i_<split>/ (built under a temporary name, then renamed) and the contact
    sheet t2i_<split>.png: rows of up to 8 ground-truth images, each over the image generated from its caption."""
    folder = out_dir / f"t2i_{split}"
    partial = out_dir / f".partial-t2i_{split}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for sid, image in zip(ids, images):
        write_png(partial / f"{safe_name(sid)}.png", to_uint8(image))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    rows = []
    for start in range(0, len(truth), 8):
        rows += [truth[start:start + 8], generated[start:start + 8]]
    sheet = out_dir / f"t2i_{split}.png"
    write_png(sheet, image_grid(rows))
    return {"sheet": str(sheet), "images_dir": str(folder)}


def safe_name(sample_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(sample_id))


def t2i_table(report: dict) -> list:
    return ["| images | R-precision (own caption first) |", "|---|---|",
            f"| generated from {report['inputs']} | {100 * report['r_precision']:.1f}% |",
            f"| ground truth (64 px thumbnails) | {100 * report['r_precision_ground_truth']:.1f}% |",
            f"| chance (1 of {report['candidates']}) | {100 * report['chance']:.1f}% |",
            f"mean colour nearer the own ground truth than another's: {100 * report['colour_agreement']:.1f}% "
            "(chance 50%)",
            f"{report['items']} images in {report['seconds']:.1f} s ({report['images_per_second']:.1f} images/s), "
            f"{report['codes_used']} of {report['codebook_size']} codes used"]
