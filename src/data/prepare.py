"""Raw files (or precomputed features) -> MindRecord shards + meta.json. The entry behind scripts/prepare_data.sh.

    python -m src.data.prepare SOURCE OUT_DIR [--format manifest|coco|karpathy|aic|csv|webdataset|narratives|vqa]
                               [--on-error fail|skip] [--like TRAIN_DIR] [--split NAME] [--image-dir DIR]
                               [--audio-dir DIR] [--annotations VQA_ANNOTATIONS] [--csv-img-key COL]
                               [--csv-caption-key COL] [--csv-audio-key COL] [--csv-separator SEP]
                               [--config config/x.yaml] [--set prepare.shards=8 ...]

Steps: read and check every entry of the source, fit the MRC codebook on training regions (unless reusing one), extract
features in worker processes, tokenise, write shards into a temporary directory, and rename it into place at the end.
Exit status (src/commands.py): 0 done; 2 bad input (a bad sample, a missing file, a bad config key; one `error:`
line, nothing written); 1 a full disk (one line, nothing written) or a bug.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np

from src.commands import add_set_arg, run_main
from src.config import Config, ConfigError, PrepareConfig, load_config, load_section, to_dict
from src.data.audio import load_npz_frames, read_audio
from src.data.errors import ExtractorUnavailable, FeatureError, PrepareError, written_whole
from src.data.extractors import (audio_extractor_info, audio_feature_dim, audio_token_seconds, audio_tokens_batch,
                                 check_extractors, image_extractor_info, image_feature_dim, image_regions_batch,
                                 top_k_distribution)
from src.data.image import (Regions, fit_codebook, grid_regions, load_npz_regions, nearest_centroid, read_image,
                            thumbnail)
from src.data.lineage import reference_settings
from src.data.records import (FEATURES_RECORD, FORMAT_VERSION, META, DatasetError, SplitWriter, encode_features,
                              open_prepared, write_json_atomic)
from src.data import archive, attachments
from src.data import captions, vqa, webdataset  # noqa: F401 (they register their source formats)
from src.data.sources import FORMATS, Problem, Sample, read_source
from src.data.tokenizer import Tokenizer, resolve_vocab
from src.data.further import sample_features, stored_columns
from src.files import replace_dir
from src.modality import BOX_DIM, FURTHER, MODALITIES, SPECS


# ----------------------------------------------------------------------------------------------------------------------
# Feature extraction: files are decoded in worker processes (a plain function of module-level state); the pretrained
# networks then run on whole batches in this process (src/data/extractors.py).
# ----------------------------------------------------------------------------------------------------------------------
_worker_cfg: Optional[PrepareConfig] = None


@dataclasses.dataclass
class Decoded:
    """One sample's files, decoded: regions / tokens when no network is needed, else pixels / a waveform."""
    regions: Optional[Regions] = None
    pixels: Optional[np.ndarray] = None       # RGB uint8, for a pretrained image network
    thumb: Optional[np.ndarray] = None
    tokens: Optional[np.ndarray] = None
    wave: Optional[np.ndarray] = None         # 16 kHz mono, for a pretrained audio network
    cut: float = 0.0


def _init_worker(cfg: PrepareConfig) -> None:
    global _worker_cfg
    _worker_cfg = cfg


def decode(sample: Sample, cfg: Optional[PrepareConfig] = None):
    """A sample's files -> Decoded, or a Problem naming the file."""
    cfg = cfg or _worker_cfg
    out = Decoded()
    for path, kind in ((sample.image, "image"), (sample.audio, "audio")):
        if path is None:
            continue
        try:
            if kind == "image":
                _decode_image(path, cfg.image, out)
            else:
                _decode_audio(path, cfg.audio, out)
        except FeatureError as e:
            return Problem(sample.where, sample.id, str(e), file=path)
    return out


def _decode_image(path: str, cfg, out: Decoded) -> None:
    if path.endswith(".npz"):
        out.regions = load_npz_regions(path, cfg)
        return
    image = read_image(path)
    out.thumb = thumbnail(image, cfg.thumb_size)
    if cfg.extractor == "grid":
        out.regions = grid_regions(image, cfg)
    else:
        out.pixels = image


def _decode_audio(path: str, cfg, out: Decoded) -> None:
    if path.endswith(".npz"):
        out.tokens = load_npz_frames(path)
        return
    wave, out.cut = read_audio(path, cfg)
    if cfg.extractor == "logmel":
        out.tokens = audio_tokens_batch([wave], cfg)[0]
    else:
        out.wave = wave


def _decoded_all(samples: List[Sample], cfg: PrepareConfig):
    if cfg.workers <= 1 or len(samples) < 16:
        yield from (decode(s, cfg) for s in samples)
        return
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        yield from pool.imap(decode, samples, chunksize=8)


def extract_all(samples: List[Sample], cfg: PrepareConfig):
    """(image Regions or None, audio tokens or None, seconds of audio cut) or a Problem per sample, in input order.
    The pretrained networks see batches of `cfg.extract_batch`; an input shared by neighbouring samples (one picture
    with captions in two languages or with several questions, one recording of a question asked about many pictures)
    is computed once."""
    seen = {"image": OrderedDict(), "audio": OrderedDict()}
    pending: list = []
    for sample, decoded in zip(samples, _decoded_all(samples, cfg)):
        pending.append((sample, decoded))
        if len(pending) >= cfg.extract_batch:
            yield from _run_networks(pending, cfg, seen)
            pending = []
    yield from _run_networks(pending, cfg, seen)


# recent network outputs kept per modality (at least a batch's worth: a batch's inputs are never evicted while used)
RECENT = {"image": 256, "audio": 2048}


def _run_networks(pending: list, cfg: PrepareConfig, seen: dict):
    """The networks over a batch's decoded inputs, each distinct input once: an image by its path, a recording by
    the digest of its samples. `seen` keeps recent outputs by those keys."""
    todo = [(s, d) for s, d in pending if isinstance(d, Decoded)]
    image_keys = {id(d): s.image for s, d in todo if d.pixels is not None}
    audio_keys = {id(d): hashlib.sha1(d.wave.tobytes()).hexdigest() for s, d in todo if d.wave is not None}
    _compute(seen["image"], image_keys, {s.image: d.pixels for s, d in todo if d.pixels is not None},
             image_regions_batch, cfg.image, max(RECENT["image"], cfg.extract_batch))
    _compute(seen["audio"], audio_keys, {audio_keys[id(d)]: d.wave for s, d in todo if d.wave is not None},
             audio_tokens_batch, cfg.audio, max(RECENT["audio"], cfg.extract_batch))
    for s, d in pending:
        if not isinstance(d, Decoded):
            yield d
            continue
        if d.pixels is not None:
            d.regions = seen["image"][image_keys[id(d)]]
            if isinstance(d.regions, FeatureError):
                yield Problem(s.where, s.id, str(d.regions), file=s.image)
                continue
            d.regions = dataclasses.replace(d.regions, thumb=d.thumb)
        if d.wave is not None:
            d.tokens, d.wave = seen["audio"][audio_keys[id(d)]], None
        if isinstance(d.tokens, FeatureError):
            yield Problem(s.where, s.id, str(d.tokens), file=s.audio)
            continue
        yield d.regions, d.tokens, d.cut


def _compute(cache: OrderedDict, keys: dict, inputs: dict, run, cfg, keep: int) -> None:
    """Fill `cache` with run()'s output for every input of `inputs` (key -> input) it lacks; the keys this batch
    uses are refreshed first, so that trimming the cache to `keep` entries never drops one of them."""
    for key in set(keys.values()):
        if key in cache:
            cache.move_to_end(key)
    new = {k: x for k, x in inputs.items() if k not in cache}
    for key, out in zip(new, _batched(run, list(new.values()), cfg)):
        cache[key] = out
    while len(cache) > keep:
        cache.popitem(last=False)


def _batched(run, inputs: list, cfg) -> list:
    """run(inputs, cfg) as one batch; when one input is unusable, each alone, its error in its place."""
    if not inputs:
        return []
    try:
        return run(inputs, cfg)
    except FeatureError:
        out = []
        for x in inputs:
            try:
                out.append(run([x], cfg)[0])
            except FeatureError as e:
                out.append(e)
        return out


# ----------------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Settings:
    """Everything that fixes how samples become arrays; a --like run copies it from the reference dataset."""
    prepare: PrepareConfig
    vocab_path: str
    labels: Optional[List[str]] = None          # None: collected from the training samples
    codebook: Optional[np.ndarray] = None        # k-means centroids, or None
    mrc: Optional[dict] = None                   # {"source": "scores"|"kmeans"|"none", "num_classes": C, "top_k": k}
    image_dim: Optional[int] = None
    audio_dim: Optional[int] = None
    standardize: Optional[dict] = None           # {"image"|"audio": {"mean": [...], "std": [...]}} of the reference
    attached: Dict[str, dict] = dataclasses.field(default_factory=dict)  # the reference's attachment entries (VQA's
    #                                                                       answer vocabulary)
    like: Optional[str] = None
    further_dims: Dict[str, int] = dataclasses.field(default_factory=dict)  # a further modality's feature width


def settings_like(ref_dir: str, own: PrepareConfig) -> Settings:
    """The settings of a prepared set, or of the data a run was trained on (RUN/data_settings). What the reference
    has no part in stays the caller's (`own`): a label set or an attachment's settings (VQA's answer vocabulary,
    prepare.vqa) when the reference has none, as a pre-training set has none."""
    ref = reference_settings(ref_dir)
    prep = attachments.own_settings(load_section("prepare", ref.meta["prepare"], f"{ref_dir}/{META}"), own, ref.meta)
    codebook = np.load(ref.root / ref.meta["image"]["mrc"]["codebook"]) if ref.meta["image"]["mrc"].get("codebook") \
        else None
    standardize = {m: ref.meta[m]["standardize"] for m in ("image", "audio") + FURTHER
                   if ref.meta.get(m, {}).get("standardize")}
    return Settings(prep, ref.vocab_path, labels=list(ref.labels) or None, codebook=codebook,
                    mrc=ref.meta["image"]["mrc"],
                    image_dim=ref.image_dim, audio_dim=ref.audio_dim, standardize=standardize,
                    attached=attachments.reference_entries(ref.meta),
                    further_dims={m: ref.meta[m]["feature_dim"] for m in FURTHER
                                  if ref.meta.get(m, {}).get("feature_dim")},
                    like=str(ref.meta.get("trained_on") or Path(ref_dir).resolve()))


def prepare(source: str, out_dir: str, cfg: PrepareConfig, fmt: str = "manifest", split: str = "train",
            like: Optional[str] = None, on_error: str = "fail", image_dir: Optional[str] = None,
            audio_dir: Optional[str] = None, log=print, **options) -> dict:
    """Prepare `source` into `out_dir` and return its meta; an up-to-date `out_dir` is reused as it is.
    `options`: the format's own (a VQA questions file's annotations, CSV columns)."""
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be 'fail' or 'skip', got '{on_error}'")
    settings = settings_like(like, cfg) if like else Settings(cfg, resolve_vocab(cfg.text.vocab))
    cfg = settings.prepare
    check_extractors(cfg.image, cfg.audio)
    t0 = time.time()
    samples, problems = [], []
    for entry in read_source(source, fmt, split, image_dir, audio_dir, **options):
        (problems if isinstance(entry, Problem) else samples).append(entry)
    samples = _drop_unknown_labels(samples, problems, settings.labels)
    _stop_or_report(problems, on_error, log)

    out = Path(out_dir)
    fingerprint = _fingerprint(FORMATS[fmt].files(source, options), fmt, split, samples, settings, on_error, options)
    if _up_to_date(out, fingerprint, log):
        return json.loads((out / META).read_text(encoding="utf-8"))
    _remove_partials(out, log)
    tmp = out.parent / f".{out.name}.partial-{mp.current_process().pid}"
    tmp.mkdir(parents=True)
    with written_whole(out, tmp, "the prepared data"):
        meta = _write(samples, problems, settings, tmp, on_error, log)
        meta.update(fingerprint=fingerprint, source={"path": str(Path(source).resolve()), "format": fmt},
                    prepare=to_dict(cfg), like=settings.like)
        write_json_atomic(tmp / META, meta)
        replace_dir(tmp, out)
    secs = time.time() - t0
    n = meta["counts"]["written"]
    log(f"prepared {n} samples into {out} in {secs:.1f} s ({n / max(secs, 1e-9):.1f} samples/s); "
        f"skipped {len(meta['skipped'])}")
    return meta


def _drop_unknown_labels(samples: List[Sample], problems: List[Problem], labels: Optional[List[str]]) -> List[Sample]:
    """With a reference label set (--like), a sample with a label outside it becomes a problem."""
    if labels is None:
        return samples
    known, kept = set(labels), []
    for s in samples:
        unknown = [label for label in s.labels if label not in known]
        if unknown:
            problems.append(Problem(s.where, s.id, f"labels {unknown} are not in the reference label set"))
        else:
            kept.append(s)
    return kept


def _stop_or_report(problems: List[Problem], on_error: str, log) -> None:
    if not problems:
        return
    if on_error == "fail":
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise PrepareError(problems[0].message() + more + "; nothing was written. Use --on-error skip to skip bad "
                           "samples")
    for p in problems:
        log(f"skipping {p.message()}")


def _write(samples: List[Sample], problems: List[Problem], settings: Settings, tmp: Path, on_error: str, log) -> dict:
    cfg = settings.prepare
    tokenizer = Tokenizer(settings.vocab_path, cfg.text.lower_case, cfg.text.chinese)
    shutil.copyfile(settings.vocab_path, tmp / "vocab.txt")
    labels = settings.labels if settings.labels is not None else sorted({label for s in samples for label in s.labels})
    label_ids = {label: i for i, label in enumerate(labels)}
    if settings.mrc is None:
        _choose_mrc(samples, settings, log)
    if settings.codebook is not None:
        np.save(tmp / "codebook.npy", settings.codebook)

    writers: Dict[str, SplitWriter] = {}
    planned = {sp: sum(s.split == sp for s in samples) for sp in {s.split for s in samples}}
    stats = {"truncated_text": 0, "truncated_audio": 0, "seconds_audio_cut": 0.0}
    modalities = {sp: {m: 0 for m in MODALITIES} for sp in planned}
    moments = {m: FeatureMoments() for m in ("image", "audio") + FURTHER}
    fit_split = "train" if "train" in planned else None  # standardisation statistics come from the training split
    attached: Dict[str, Dict[str, list]] = {}  # each attachment's records by split, in index order
    progress = _progress(len(samples))
    for sample, result in zip(samples, extract_all(samples, cfg)):
        progress.update(1)
        if not isinstance(result, Problem):
            result = _check_dims(sample, *result, settings) or result
        if not isinstance(result, Problem):
            try:
                further = sample_features(sample, settings.further_dims)
            except FeatureError as e:
                result = Problem(sample.where, sample.id, str(e))
        if isinstance(result, Problem):
            if on_error == "fail":
                progress.close()
                raise PrepareError(result.message() + "; nothing was written. Use --on-error skip to skip bad samples")
            log(f"skipping {result.message()}")
            problems.append(result)
            continue
        regions, tokens, cut = result
        if regions is not None and settings.codebook is not None and regions.class_probs is None:
            regions.classes = nearest_centroid(regions.features, settings.codebook)
        row = _row(sample, regions, tokens, tokenizer, label_ids, settings, stats)
        for m, (features, boxes) in further.items():
            row.update(stored_columns(m, features, boxes))
        if sample.split == fit_split or fit_split is None:
            moments["image"].add(regions.features if regions is not None else None)
            moments["audio"].add(tokens)
            for m, (features, _) in further.items():
                moments[m].add(features)
        if cut > 0:
            stats["truncated_audio"] += 1
            stats["seconds_audio_cut"] += cut
        if sample.split not in writers:
            shards = max(1, min(cfg.shards, planned[sample.split]))
            writers[sample.split] = SplitWriter(tmp / sample.split / "data.mindrecord", shards)
        writers[sample.split].add(row)
        attachments.collect(attached, sample.split, sample.attached, sample.where)
        for m in modalities[sample.split]:
            modalities[sample.split][m] += int(row[SPECS[m].stored[-1]] > 0)
    progress.close()

    splits, sizes = {}, {}
    for name, w in writers.items():
        files = [p.relative_to(tmp).as_posix() for p in w.commit()]
        splits[name] = {"count": w.count, "files": [f for f in files if not f.endswith(".db")],
                        "modalities": modalities[name]}
        sizes.update({f: (tmp / f).stat().st_size for f in files})
    entries = attachments.write_attachments(tmp, attached, cfg, settings.attached)
    for extra in ["vocab.txt", "codebook.npy"] + attachments.files_of(entries):
        if (tmp / extra).exists():
            sizes[extra] = (tmp / extra).stat().st_size
    if not splits:
        raise PrepareError("no usable sample: nothing to write")
    if stats["truncated_audio"]:
        log(f"warning: {stats['truncated_audio']} audio files were longer than {cfg.audio.max_seconds} s and were cut "
            f"({stats['seconds_audio_cut']:.1f} s in all)")
    if stats["truncated_text"]:
        log(f"warning: {stats['truncated_text']} captions had more than {cfg.text.max_tokens} word pieces and were cut")
    standardize = settings.standardize if settings.standardize is not None else \
        {m: v.result() for m, v in moments.items() if v.count}
    return {
        "format_version": FORMAT_VERSION, "complete": True,
        "image": {"extractor": _extractor_info(samples, "image", cfg),
                  "feature_dim": settings.image_dim or image_feature_dim(cfg.image), "box_dim": BOX_DIM,
                  "thumb_size": cfg.image.thumb_size, "mrc": settings.mrc, "standardize": standardize.get("image")},
        "audio": {"extractor": _extractor_info(samples, "audio", cfg),
                  "feature_dim": settings.audio_dim or audio_feature_dim(cfg.audio),
                  "sample_rate": cfg.audio.sample_rate,
                  "token_seconds": audio_token_seconds(cfg.audio), "standardize": standardize.get("audio")},
        **{m: {"extractor": {"name": "precomputed"}, "feature_dim": settings.further_dims.get(m),
               "standardize": standardize.get(m)} for m in FURTHER},
        "feature_storage": "float16",
        "text": {"vocab_file": "vocab.txt", "vocab_size": len(tokenizer),
                 "special_ids": {t: tokenizer.special_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")},
                 "lower_case": cfg.text.lower_case, "chinese": cfg.text.chinese, "max_tokens": cfg.text.max_tokens},
        "labels": labels, "splits": splits, "file_sizes": sizes, **entries,
        "counts": {"read": len(samples) + len(problems), "written": sum(w.count for w in writers.values()),
                   "skipped": len(problems), **stats},
        "skipped": [dataclasses.asdict(p) for p in problems],
    }


class FeatureMoments:
    """Per-channel mean and standard deviation of the feature rows seen, in float64 (of the float16 values stored)."""

    def __init__(self):
        self.count, self.sum, self.sum_sq = 0, 0.0, 0.0

    def add(self, features: Optional[np.ndarray]) -> None:
        if features is None or len(features) == 0:
            return
        x = np.asarray(features, np.float16).astype(np.float64)
        self.count += len(x)
        self.sum = self.sum + x.sum(0)
        self.sum_sq = self.sum_sq + (x * x).sum(0)

    def result(self) -> dict:
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sum_sq / self.count - mean * mean, 0.0))
        # a channel that never varies in training (a ReLU that stays off) must not be blown up elsewhere
        std = np.maximum(std, 1e-2 * float(np.median(std)) + 1e-6)
        return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
                "rows": int(self.count)}


def _extractor_info(samples: List[Sample], modality: str, cfg: PrepareConfig) -> Optional[dict]:
    """What made the features: the configured extractor, or what `scripts/extract_features.sh` recorded beside the
    manifest of precomputed `.npz` files (else 'precomputed')."""
    paths = [getattr(s, modality) for s in samples if getattr(s, modality)]
    if not paths:
        return None
    if not paths[0].endswith(".npz"):
        return image_extractor_info(cfg.image) if modality == "image" else audio_extractor_info(cfg.audio)
    for parent in Path(paths[0]).parents:
        record = parent / FEATURES_RECORD
        if record.is_file():
            return json.loads(record.read_text(encoding="utf-8")).get(modality)
    return {"name": "precomputed"}


def _choose_mrc(samples: List[Sample], settings: Settings, log) -> None:
    """Class distributions where the regions carry them (a pretrained network or a detector's scores), else a k-means
    codebook fitted on training regions."""
    cfg = settings.prepare
    train = [s for s in samples if s.split == "train" and s.image] or [s for s in samples if s.image]
    if not train:
        settings.mrc = {"source": "none", "num_classes": 1, "top_k": 1}
        return
    if not train[0].image.endswith(".npz") and cfg.image.extractor != "grid":
        from src.data.efficientnet import NUM_CLASSES
        settings.mrc = {"source": "scores", "num_classes": NUM_CLASSES, "top_k": min(cfg.image.mrc_top_k, NUM_CLASSES)}
        return
    rng = np.random.default_rng(cfg.seed)
    pick = [dataclasses.replace(train[i], audio=None)  # only the regions are needed here
            for i in sorted(rng.permutation(len(train))[:cfg.image.codebook_fit_samples])]
    fit = [r[0] for r in extract_all(pick, cfg) if not isinstance(r, Problem)]
    if not fit:
        raise PrepareError("no readable training image to fit the region codebook")
    if fit[0].class_probs is not None:
        classes = fit[0].num_classes
        settings.mrc = {"source": "scores", "num_classes": classes, "top_k": min(cfg.image.mrc_top_k, classes)}
        return
    # the most common dim is the dataset's; samples with another are reported when they are written
    dims = [r.features.shape[1] for r in fit]
    settings.image_dim = max(set(dims), key=dims.count)
    fit = [r for r in fit if r.features.shape[1] == settings.image_dim]
    t = time.time()
    settings.codebook = fit_codebook(np.concatenate([r.features for r in fit]), cfg.image.mrc_clusters,
                                     cfg.image.kmeans_iters, cfg.seed)
    settings.mrc = {"source": "kmeans", "num_classes": int(len(settings.codebook)), "codebook": "codebook.npy",
                    "top_k": 1}
    log(f"fitted a {len(settings.codebook)}-centroid region codebook on {len(fit)} images in {time.time() - t:.1f} s")


def _check_dims(sample: Sample, regions, tokens, cut, settings: Settings) -> Optional[Problem]:
    """The first sample fixes each feature dim; later samples (and --like runs) must agree."""
    if regions is not None:
        dim = regions.features.shape[1]
        settings.image_dim = settings.image_dim or dim
        if dim != settings.image_dim:
            return Problem(sample.where, sample.id, f"region features have dim {dim}, expected {settings.image_dim}",
                           file=sample.image)
        if settings.mrc["source"] == "scores":
            if regions.class_probs is None:
                return Problem(sample.where, sample.id, "no class scores (the training regions have them)",
                               file=sample.image)
            if regions.num_classes != settings.mrc["num_classes"]:
                return Problem(sample.where, sample.id, f"{regions.num_classes} classes in the class scores, expected "
                               f"{settings.mrc['num_classes']}", file=sample.image)
    if tokens is not None:
        dim = tokens.shape[1]
        settings.audio_dim = settings.audio_dim or dim
        if dim != settings.audio_dim:
            return Problem(sample.where, sample.id, f"audio features have dim {dim}, expected {settings.audio_dim}",
                           file=sample.audio)
    return None


def mrc_targets(regions: Regions, mrc: dict) -> tuple:
    """(ids [N, k] int32, probabilities [N, k] float32) of each region's MRC target: the top k of its class
    distribution, or its k-means cluster with probability 1 (k = 1), or class 0 when the data has no classes."""
    n, k = len(regions.features), int(mrc["top_k"])
    if mrc["source"] == "scores":
        return top_k_distribution(regions.class_probs, k)
    ids = regions.classes if regions.classes is not None else np.zeros(n, np.int32)
    return ids.astype(np.int32).reshape(n, 1), np.ones((n, 1), np.float32)


def _row(sample: Sample, regions, tokens, tokenizer: Tokenizer, label_ids: dict, settings: Settings,
         stats: dict) -> dict:
    cfg = settings.prepare
    ids = tokenizer.encode(sample.text, sample.lang) if sample.text else []
    if len(ids) > cfg.text.max_tokens:
        stats["truncated_text"] += 1
        ids = ids[:cfg.text.max_tokens]
    empty_f = np.zeros(0, np.float32)
    row = {"id": sample.id, "text": sample.text or "", "lang": sample.lang,
           "text_ids": np.asarray(ids, np.int32), "n_text": len(ids),
           "image_feat": b"", "image_boxes": empty_f, "mrc_ids": np.zeros(0, np.int32), "mrc_probs": empty_f,
           "n_regions": 0, "image_thumb": b"", "audio_feat": b"", "n_audio": 0,
           "labels": np.asarray([label_ids[label] for label in sample.labels], np.int32),
           "n_labels": len(sample.labels)}
    if regions is not None:
        mrc_ids, mrc_probs = mrc_targets(regions, settings.mrc)
        row.update(image_feat=encode_features(regions.features), image_boxes=regions.boxes.reshape(-1),
                   mrc_ids=mrc_ids.reshape(-1), mrc_probs=mrc_probs.reshape(-1), n_regions=len(regions.features),
                   image_thumb=regions.thumb.tobytes() if regions.thumb is not None else b"")
    if tokens is not None:
        row.update(audio_feat=encode_features(tokens), n_audio=len(tokens))
    return row


# ----------------------------------------------------------------------------------------------------------------------
# Output directory handling: reuse, interrupted runs, atomic replacement
# ----------------------------------------------------------------------------------------------------------------------
def _fingerprint(sources: List[str], fmt: str, split: str, samples: List[Sample], settings: Settings,
                 on_error: str, options: dict) -> str:
    h = hashlib.sha256()
    for source in sources:
        if source.endswith(".tar"):  # a shard: its samples' byte ranges, size and time stand for its content
            st = Path(source).stat()
            h.update(f"{source}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        else:
            h.update(Path(source).read_bytes())
    h.update(json.dumps([fmt, split, on_error, to_dict(settings.prepare), settings.like,
                         hashlib.sha256(Path(settings.vocab_path).read_bytes()).hexdigest()]
                        + ([sorted(options.items())] if options else [])).encode())
    for s in samples:
        for p in (s.image, s.audio, *s.further.values()):
            if p:
                st = Path(archive.container(p)).stat()
                h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _up_to_date(out: Path, fingerprint: str, log) -> bool:
    if not out.exists():
        return False
    try:
        ready = open_prepared(out)
    except DatasetError as e:
        if any(out.iterdir()) and not (out / META).exists() and not list(out.glob("*/data.mindrecord*")):
            raise PrepareError(f"{out} exists and is not a prepared dataset; refusing to overwrite it") from None
        log(f"rebuilding {out}: {e}")
        return False
    if ready.meta.get("fingerprint") == fingerprint:
        log(f"{out} is up to date with its inputs; reusing it")
        return True
    log(f"{out} was prepared from other inputs or settings; rebuilding it")
    return False


def _remove_partials(out: Path, log) -> None:
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        log(f"removing {stale}, the half-written output of an interrupted run")
        shutil.rmtree(stale, ignore_errors=True)


def _progress(total: int):
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="sample", desc="preparing", file=sys.stderr, mininterval=1.0,
                    disable=total < 50)
    except ImportError:  # tqdm is in requirements.txt; keep preparation usable without it
        class _Null:
            update = close = lambda *a, **k: None
        return _Null()


def source_arguments(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line shared by preparation and feature extraction: a source, an output folder, how to read it."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("source", help="manifest JSONL, COCO captions JSON, Karpathy split JSON, AIC-ICC JSON, "
                                   "CSV/TSV, Localized Narratives JSONL, VQA questions JSON, or webdataset shards "
                                   "(a .tar, a folder, a glob or a brace list such as 'cc3m/{00000..00099}.tar')")
    ap.add_argument("out_dir")
    ap.add_argument("--format", default="manifest", choices=sorted(FORMATS))
    ap.add_argument("--split", default="train", help="split of entries that do not name one (default: train)")
    ap.add_argument("--on-error", default="fail", choices=["fail", "skip"])
    ap.add_argument("--image-dir", default=None, help="COCO / narratives / VQA image folder (VQA: or a JSON Lines "
                                                      "manifest of {image_id, image})")
    ap.add_argument("--audio-dir", default=None, help="narratives audio folder; VQA: spoken questions, "
                                                      "<question_id>.wav")
    ap.add_argument("--config", default=None, help="a YAML recipe; its 'prepare' section is used")
    add_set_arg(ap, dest="overrides", help="override config values of the 'prepare' section")
    for name, fmt in sorted(FORMATS.items()):
        if fmt.flags:
            group = ap.add_argument_group(f"format {name}")
            for flag, settings in fmt.flags.items():
                group.add_argument(flag, **settings)
    return ap


def format_options(args: argparse.Namespace) -> dict:
    """The reader options of the chosen format; another format's option given is a PrepareError."""
    for name, fmt in FORMATS.items():
        for flag, settings in fmt.flags.items():
            if name != args.format and getattr(args, settings["dest"]) != settings.get("default"):
                raise PrepareError(f"{flag} is read with format {name} only (this source's format: {args.format})")
    return {dest: getattr(args, dest) for dest in FORMATS[args.format].options}


# what preparation and feature extraction answer with one line and exit status 2 (src/commands.py)
USER_ERRORS = (ConfigError, PrepareError, DatasetError, FeatureError, ExtractorUnavailable, FileNotFoundError)


@contextlib.contextmanager
def extractor_hint(reference: Optional[str] = None):
    """A missing extractor package, with the setting that prepares without it; a set prepared --like a reference
    keeps the reference's extractor, so there the package is the only way."""
    try:
        yield
    except ExtractorUnavailable as e:
        if e.alternative is None:
            raise
        hint = (f"the data of --like {reference} was prepared with it, so this set needs it too" if reference else
                f"or prepare without it: --set {e.alternative}")
        raise ExtractorUnavailable(f"{e} ({hint})", e.alternative) from None


def main(argv=None) -> int:
    ap = source_arguments("scripts/prepare_data.sh", __doc__.split("\n")[0])
    ap.add_argument("--like", default=None, help="reuse tokenizer, feature settings, statistics, labels, answers "
                                                 "and codebook of this prepared dataset, or of the data a run was "
                                                 "trained on (a run directory): for fine-tuning and evaluation sets")
    args = ap.parse_args(argv)

    def run() -> int:
        cfg: Config = load_config(args.config, args.overrides, only=("prepare",))
        with extractor_hint(reference=args.like):
            meta = prepare(args.source, args.out_dir, cfg.prepare, args.format, args.split, args.like, args.on_error,
                           args.image_dir, args.audio_dir, **format_options(args))
        if meta["skipped"]:
            print(f"{len(meta['skipped'])} samples skipped; see 'skipped' in {Path(args.out_dir) / META}")
        return 0
    return run_main(run, USER_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
