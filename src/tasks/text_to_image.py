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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from src.config import Config, ConfigError, GenerateConfig, with_section
from src.data.errors import FeatureError
from src.data.records import DatasetError
from src.infer.file_inputs import files_inputs
from src.infer.generate import Generator, Symbols, generate_rows
from src.infer.graphs import VERIFY_ROWS, Graph, GraphSet, baked_decoding, decoding_graphs
from src.infer.items import Items, content_codes, load_items, run_batched
from src.infer.pictures import to_uint8, write_images, write_png
from src.metrics.image import caption_candidates, colour_agreement, own_caption_ranks
from src.metrics.tables import markdown_table
from src.modality import MODALITIES
from src.model.opt import DataDims
from src.model.text_to_image import CodesToImages, TextToImageModel
from src.tasks.dvae import load_trained as load_dvae
from src.tasks.registry import Flags, Task, register
from src.tasks.t2i_scoring import load_scorer, pixel_region_inputs

INPUT_SETS = {"text": ("text",), "text+audio": ("text", "audio")}


@dataclass
class TextToImageConfig:
    """Text-to-image (`eval.py --task t2i`, `infer.py --text`): the vision decoder samples the dVAE codes of an image,
    top-k, from the encoder output over a caption; the frozen dVAE decoder turns them into pixels."""
    inputs: str = "text"          # text | text+audio : what the encoder is shown
    top_k: int = 64               # sample among the k most likely codes of each position (0: all)
    top_p: float = 1.0            # and among the fewest whose probability reaches top_p
    temperature: float = 1.0      # divides the logits before sampling
    seed: int = 0                 # sampling
    batch_size: int = 16          # images generated together (the compiled batch)
    candidates: int = 100         # R-precision: captions each generated image ranks (its own and others of the split)
    scorer: str = ""              # the run that scores (caption, image) pairs: a retrieval run by its embeddings'
    #                               cosine, any other by its matching head (empty: the generating checkpoint's)
    sheet: int = 16               # generated images on the contact sheet, each under its ground truth


def input_set(cfg: Config) -> tuple:
    if cfg.t2i.inputs not in INPUT_SETS:
        raise ConfigError(f"t2i.inputs '{cfg.t2i.inputs}' is unknown (known: {', '.join(INPUT_SETS)})")
    return INPUT_SETS[cfg.t2i.inputs]


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
    dvae, data = load_dvae(dvae_cfg, resolve_checkpoint(cfg.dvae.checkpoint))
    dims = dataclasses.replace(DataDims.from_prepared(data, cfg.data),
                               codebook_size=cfg.dvae.codebook_size)
    model = TextToImageModel(cfg.model, dims)
    load_weights(model, ckpt, ("net.", "dir_head."))
    model.set_train(False)
    return model, dvae, data


def t2i_graphs(cfg: Config, ckpt) -> GraphSet:
    """The vision decoder's `start_text`, `start_text_audio` and `step` (t2i.top_k baked in; temperature, top_p
    and seed apply outside the graph) and `decode`, the frozen dVAE decoder: codes [B, grid^2] -> images."""
    model, dvae, _ = load_trained(cfg, ckpt)
    graphs = decoding_graphs(lambda m: image_generator(model, dvae, cfg, m).generator, INPUT_SETS.values())
    codes = dvae.grid ** 2

    def example_codes(items):
        return (np.arange(VERIFY_ROWS * codes, dtype=np.int32).reshape(VERIFY_ROWS, -1) % cfg.dvae.codebook_size,)
    graphs["decode"] = Graph(CodesToImages(dvae), ["codes"], ["images"], example_codes)
    return GraphSet(graphs, baked_decoding(sampling_config(cfg, codes), cfg.dvae.codebook_size,
                                           cfg.model.vision_decoder_layers, section="t2i", codes_per_image=codes,
                                           dvae_checkpoint=cfg.dvae.checkpoint))


def graph_image_generator(graphs, modalities, cfg: Config) -> ImageGenerator:
    """Text-to-image on the start, step and decode cells of `graphs` (a checkpoint's or its export's), with cfg's t2i
    sampling settings."""
    gen_cfg = sampling_config(cfg, graphs.decoding["codes_per_image"])
    generator = Generator(None, modalities, gen_cfg, image_symbols(cfg.dvae.codebook_size), cfg.model.max_positions,
                          graphs=graphs.generator_graphs(modalities, gen_cfg))
    return ImageGenerator(generator, graphs["decode"])


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


def first_of_each(codes: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct value, in order."""
    return np.sort(np.unique(codes, return_index=True)[1])


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


def t2i_table(report: dict) -> list:
    rows = [(f"generated from {report['inputs']}", f"{100 * report['r_precision']:.1f}%"),
            ("ground truth (64 px thumbnails)", f"{100 * report['r_precision_ground_truth']:.1f}%"),
            (f"chance (1 of {report['candidates']})", f"{100 * report['chance']:.1f}%")]
    return markdown_table(("images", "R-precision (own caption first)"), rows) + [
        f"mean colour nearer the own ground truth than another's: {100 * report['colour_agreement']:.1f}% (chance 50%)",
        f"{report['items']} images in {report['seconds']:.1f} s ({report['images_per_second']:.1f} images/s), "
        f"{report['codes_used']} of {report['codebook_size']} codes used"]


def evaluate_run(run) -> List[str]:
    """eval.py --task t2i: generate from the split's captions, R-precision against the ground truth's, PNGs and a
    contact sheet beside the checkpoint (or the export)."""
    cfg = run.cfg
    generate = graph_image_generator(run.graphs, input_set(cfg), cfg)
    run.report.update(evaluate_text_to_image(generate, load_scorer(cfg, run.graphs.checkpoint), run.data(), cfg,
                                             run.split, run.args.limit, run.out_dir))
    run.log(f"contact sheet: {run.report['sheet']}")
    return t2i_table(run.report)


def draw(args, graphs, cfg: Config) -> List[str]:
    """infer.py --text: the PNGs drawn for the caption (and --audio), --count samples of it."""
    if args.image:
        raise ConfigError("text-to-image reads --text and optionally --audio, not --image")
    images = draw_rows(graphs, cfg, [args.text or ""], [args.audio] if args.audio else [], args.lang, args.count)
    out = Path(args.out or "generated.png")
    paths = [out] if args.count == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}")
                                          for i in range(args.count)]
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, image in zip(paths, images):
        write_png(path, image)
    return [str(p) for p in paths]


def draw_rows(graphs, cfg: Config, captions: Sequence[str], audios: Sequence = (), lang: str = "en",
              count: int = 1) -> np.ndarray:
    """uint8 RGB images [len(captions) x count, S, S, 3]: `count` samples drawn from each caption (with its
    recording audios[i] when given: a file, its bytes or a waveform), caption by caption, t2i.batch_size at a time."""
    if not len(captions) or any(not (c or "").strip() for c in captions) or count < 1:
        raise ConfigError("text-to-image needs captions that are not empty, and a count of at least 1")
    rows = np.repeat(np.arange(len(captions)), count)
    cfg = with_section(cfg, "t2i", dataclasses.replace(cfg.t2i, batch_size=min(cfg.t2i.batch_size, len(rows))))
    generate = graph_image_generator(graphs, ("text", "audio") if len(audios) else ("text",), cfg)
    inputs, errors = files_inputs(graphs.data(cfg), cfg, audios=audios, texts=captions, lang=lang)
    if any(errors):
        raise FeatureError(next(e for e in errors if e))
    _, images = generate(len(rows), lambda batch: tuple(x[rows[batch]] for x in inputs))
    return to_uint8(images)


def add_infer_flags(group) -> None:
    group.add_argument("--count", type=int, default=1, help="images to sample from the caption (--text)")


register(Task("t2i", __name__, settings=TextToImageConfig, graphs=t2i_graphs, evaluate=evaluate_run, infer=draw,
              infer_from=("pretrain", "t2i"), flags={"infer": Flags(add_infer_flags)},
              help="text -> image from a pre-training run with DIR: PNGs, contact sheet, R-precision"))
