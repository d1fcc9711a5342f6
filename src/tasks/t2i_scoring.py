"""Scores of (caption, image) pairs for text-to-image's R-precision: the pixels of an image (generated or ground
truth) become the encoder's image inputs exactly as the prepared data's were made from the source images, then a
retrieval model's embeddings (EmbeddingScorer) or a checkpoint's matching head (MatchingScorer) scores them."""
from __future__ import annotations

import numpy as np

from src.config import Config, load_section
from src.data.extractors import IMAGE_EXTRACTORS, image_feature_dim, image_regions_batch
from src.data.padding import as_stored, standardize
from src.data.records import DatasetError
from src.infer.items import Items, run_batched
from src.infer.pictures import to_uint8
from src.model.retrieval import MatchScore, ModalityEmbedding
from src.modality import BOX_DIM


def pixel_region_inputs(images: np.ndarray, data, cfg: Config) -> tuple:
    """Images [N, S, S, 3] in [0, 1] -> (image_feat, image_boxes, image_mask) padded and standardised as the pipeline
    does it, with the image extractor of the prepared data's settings."""
    prep = load_section("prepare", data.meta["prepare"], where=str(data.root)).image
    extractor = (data.meta["image"].get("extractor") or {}).get("name")
    if extractor not in IMAGE_EXTRACTORS or data.image_dim != image_feature_dim(prep):
        raise DatasetError(f"{data.root}: its image features are {data.image_dim}-d precomputed regions; generated "
                           "pixels can only be scored through an extractor that preparation runs "
                           f"({', '.join(IMAGE_EXTRACTORS)})")
    n, nv = len(images), cfg.data.max_regions
    feat = np.zeros((n, nv, data.image_dim), np.float32)
    boxes = np.zeros((n, nv, BOX_DIM), np.float32)
    mask = np.zeros((n, nv), np.float32)
    stats = data.standardizer("image")
    for start in range(0, n, 32):
        chunk = [to_uint8(image) for image in images[start:start + 32]]
        for i, regions in enumerate(image_regions_batch(chunk, prep), start):
            r = min(len(regions.features), nv)
            feat[i, :r] = standardize(as_stored(regions.features[:r]), stats)
            boxes[i, :r], mask[i, :r] = regions.boxes[:r], 1.0
    return feat, boxes, mask


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
