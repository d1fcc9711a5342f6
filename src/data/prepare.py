"""Raw files (or precomputed features) -> MindRecord shards + meta.json. The entry behind scripts/prepare_data.sh.

    python -m src.data.prepare MANIFEST OUT_DIR [--format manifest|coco|narratives] [--on-error fail|skip]
                               [--like TRAIN_DIR] [--config config/x.yaml] [--set prepare.shards=8]

Steps: read and check every entry of the source, fit the MRC codebook on training regions (unless reusing one), extract
features in worker processes, tokenise, write shards into a temporary directory, and rename it into place at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from src.config import Config, ConfigError, PrepareConfig, from_dict, load_config
from src.data.audio import audio_feature_dim, audio_tokens
from src.data.errors import FeatureError
from src.data.image import fit_codebook, grid_feature_dim, image_regions, nearest_centroid
from src.data.records import (FORMAT_VERSION, META, DatasetError, SplitWriter, open_prepared, write_json_atomic)
from src.data.sources import Problem, Sample, read_source
from src.data.tokenizer import Tokenizer, resolve_vocab


class PrepareError(RuntimeError):
    """Preparation stopped on bad input (with --on-error fail); nothing was written."""


# ----------------------------------------------------------------------------------------------------------------------
# Feature extraction: runs in worker processes, so it is a plain function of module-level state.
# ----------------------------------------------------------------------------------------------------------------------
_worker_state: tuple = (None, None)


def _init_worker(cfg: PrepareConfig, codebook: Optional[np.ndarray]) -> None:
    global _worker_state
    _worker_state = (cfg, codebook)


def extract(sample: Sample, cfg: Optional[PrepareConfig] = None, codebook: Optional[np.ndarray] = None):
    """(image Regions or None, audio tokens or None, seconds of audio cut), or a Problem. With a codebook, regions
    without detector classes get the id of their nearest centroid as class."""
    if cfg is None:
        cfg, codebook = _worker_state
    regions = tokens = None
    cut = 0.0
    for path, kind in ((sample.image, "image"), (sample.audio, "audio")):
        if path is None:
            continue
        try:
            if kind == "image":
                regions = image_regions(path, cfg.image)
            else:
                tokens, cut = audio_tokens(path, cfg.audio)
        except FeatureError as e:
            return Problem(sample.where, sample.id, str(e), file=path)
    if regions is not None and codebook is not None and regions.features.shape[1] == codebook.shape[1]:
        regions.classes = nearest_centroid(regions.features, codebook)
    return regions, tokens, cut


def _extract_all(samples: List[Sample], cfg: PrepareConfig, codebook: Optional[np.ndarray] = None):
    """Extraction results in input order, in `cfg.workers` processes."""
    if cfg.workers <= 1 or len(samples) < 16:
        yield from (extract(s, cfg, codebook) for s in samples)
        return
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg, codebook)) as pool:
        yield from pool.imap(extract, samples, chunksize=8)


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
    mrc: Optional[dict] = None                   # {"source": "kmeans"|"detector", "num_classes": C}
    image_dim: Optional[int] = None
    audio_dim: Optional[int] = None
    like: Optional[str] = None


def settings_like(ref_dir: str) -> Settings:
    ref = open_prepared(ref_dir)
    prep = from_dict(PrepareConfig, ref.meta["prepare"], where=f"{ref_dir}/{META}")
    codebook = np.load(ref.root / ref.meta["image"]["mrc"]["codebook"]) if ref.meta["image"]["mrc"].get("codebook") \
        else None
    return Settings(prep, ref.vocab_path, labels=list(ref.labels), codebook=codebook, mrc=ref.meta["image"]["mrc"],
                    image_dim=ref.image_dim, audio_dim=ref.audio_dim, like=str(Path(ref_dir).resolve()))


def prepare(source: str, out_dir: str, cfg: PrepareConfig, fmt: str = "manifest", split: str = "train",
            like: Optional[str] = None, on_error: str = "fail", image_dir: Optional[str] = None,
            audio_dir: Optional[str] = None, log=print) -> dict:
    """Prepare `source` into `out_dir` and return its meta; an up-to-date `out_dir` is reused as it is."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got '{on_error}'")
    settings = settings_like(like) if like else Settings(cfg, resolve_vocab(cfg.text.vocab))
    cfg = settings.prepare
    t0 = time.time()
    samples, problems = [], []
    for entry in read_source(source, fmt, split, image_dir, audio_dir):
        (problems if isinstance(entry, Problem) else samples).append(entry)
    samples = _drop_unknown_labels(samples, problems, settings.labels)
    _stop_or_report(problems, on_error, log)

    out = Path(out_dir)
    fingerprint = _fingerprint(source, fmt, split, samples, settings, on_error)
    if _up_to_date(out, fingerprint, log):
        return json.loads((out / META).read_text(encoding="utf-8"))
    _remove_partials(out, log)
    tmp = out.parent / f".{out.name}.partial-{mp.current_process().pid}"
    tmp.mkdir(parents=True)
    try:
        meta = _write(samples, problems, settings, tmp, on_error, log)
        meta.update(fingerprint=fingerprint, source={"path": str(Path(source).resolve()), "format": fmt},
                    prepare=dataclasses.asdict(cfg), like=settings.like)
        write_json_atomic(tmp / META, meta)
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
        unknown = [l for l in s.labels if l not in known]
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
    labels = settings.labels if settings.labels is not None else sorted({l for s in samples for l in s.labels})
    label_ids = {l: i for i, l in enumerate(labels)}
    if settings.mrc is None:
        _choose_mrc(samples, settings, log)
    if settings.codebook is not None:
        np.save(tmp / "codebook.npy", settings.codebook)

    writers: Dict[str, SplitWriter] = {}
    planned = {sp: sum(s.split == sp for s in samples) for sp in {s.split for s in samples}}
    stats = {"truncated_text": 0, "truncated_audio": 0, "seconds_audio_cut": 0.0}
    modalities = {sp: {"text": 0, "image": 0, "audio": 0} for sp in planned}
    progress = _progress(len(samples))
    for sample, result in zip(samples, _extract_all(samples, cfg, settings.codebook)):
        progress.update(1)
        if not isinstance(result, Problem):
            result = _check_dims(sample, *result, settings) or result
        if isinstance(result, Problem):
            if on_error == "fail":
                progress.close()
                raise PrepareError(result.message() + "; nothing was written. Use --on-error skip to skip bad samples")
            log(f"skipping {result.message()}")
            problems.append(result)
            continue
        regions, tokens, cut = result
        row = _row(sample, regions, tokens, tokenizer, label_ids, settings, stats)
        if cut > 0:
            stats["truncated_audio"] += 1
            stats["seconds_audio_cut"] += cut
        if sample.split not in writers:
            shards = max(1, min(cfg.shards, planned[sample.split]))
            writers[sample.split] = SplitWriter(tmp / sample.split / "data.mindrecord", shards)
        writers[sample.split].add(row)
        for m in modalities[sample.split]:
            modalities[sample.split][m] += int(row[f"n_{'regions' if m == 'image' else m}"] > 0)
    progress.close()

    splits, sizes = {}, {}
    for name, w in writers.items():
        files = [p.relative_to(tmp).as_posix() for p in w.commit()]
        splits[name] = {"count": w.count, "files": [f for f in files if not f.endswith(".db")],
                        "modalities": modalities[name]}
        sizes.update({f: (tmp / f).stat().st_size for f in files})
    for extra in ("vocab.txt", "codebook.npy"):
        if (tmp / extra).exists():
            sizes[extra] = (tmp / extra).stat().st_size
    if not splits:
        raise PrepareError("no usable sample: nothing to write")
    if stats["truncated_audio"]:
        log(f"warning: {stats['truncated_audio']} audio files were longer than {cfg.audio.max_seconds} s and were cut "
            f"({stats['seconds_audio_cut']:.1f} s in all)")
    if stats["truncated_text"]:
        log(f"warning: {stats['truncated_text']} captions had more than {cfg.text.max_tokens} word pieces and were cut")
    return {
        "format_version": FORMAT_VERSION, "complete": True,
        "image": {"feature_dim": settings.image_dim or grid_feature_dim(cfg.image), "box_dim": 7,
                  "thumb_size": cfg.image.thumb_size, "mrc": settings.mrc},
        "audio": {"feature_dim": settings.audio_dim or audio_feature_dim(cfg.audio), "sample_rate": cfg.audio.sample_rate},
        "text": {"vocab_file": "vocab.txt", "vocab_size": len(tokenizer),
                 "special_ids": {t: tokenizer.special_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")},
                 "lower_case": cfg.text.lower_case, "chinese": cfg.text.chinese, "max_tokens": cfg.text.max_tokens},
        "labels": labels, "splits": splits, "file_sizes": sizes,
        "counts": {"read": len(samples) + len(problems), "written": sum(w.count for w in writers.values()),
                   "skipped": len(problems), **stats},
        "skipped": [dataclasses.asdict(p) for p in problems],
    }


def _choose_mrc(samples: List[Sample], settings: Settings, log) -> None:
    """Detector classes when the training regions carry them, else a k-means codebook fitted on training regions."""
    cfg = settings.prepare
    train = [s for s in samples if s.split == "train" and s.image] or [s for s in samples if s.image]
    if not train:
        settings.mrc = {"source": "none", "num_classes": 1}
        return
    rng = np.random.default_rng(cfg.seed)
    pick = [dataclasses.replace(train[i], audio=None)  # only the regions are needed here
            for i in sorted(rng.permutation(len(train))[:cfg.image.codebook_fit_samples])]
    fit = [r[0] for r in _extract_all(pick, cfg) if not isinstance(r, Problem)]
    if not fit:
        raise PrepareError("no readable training image to fit the region codebook")
    if fit[0].classes is not None:
        settings.mrc = {"source": "detector", "num_classes": int(fit[0].num_classes)}
        return
    # the most common dim is the dataset's; samples with another are reported when they are written
    dims = [r.features.shape[1] for r in fit]
    settings.image_dim = max(set(dims), key=dims.count)
    fit = [r for r in fit if r.features.shape[1] == settings.image_dim]
    t = time.time()
    settings.codebook = fit_codebook(np.concatenate([r.features for r in fit]), cfg.image.mrc_clusters,
                                     cfg.image.kmeans_iters, cfg.seed)
    settings.mrc = {"source": "kmeans", "num_classes": int(len(settings.codebook)), "codebook": "codebook.npy"}
    log(f"fitted a {len(settings.codebook)}-centroid region codebook on {len(fit)} images in {time.time() - t:.1f} s")


def _check_dims(sample: Sample, regions, tokens, cut, settings: Settings) -> Optional[Problem]:
    """The first sample fixes each feature dim; later samples (and --like runs) must agree."""
    if regions is not None:
        dim = regions.features.shape[1]
        settings.image_dim = settings.image_dim or dim
        if dim != settings.image_dim:
            return Problem(sample.where, sample.id, f"region features have dim {dim}, expected {settings.image_dim}",
                           file=sample.image)
        if settings.mrc["source"] == "detector":
            if regions.classes is None:
                return Problem(sample.where, sample.id, "no detector class scores (the training regions have them)",
                               file=sample.image)
            if regions.num_classes != settings.mrc["num_classes"]:
                return Problem(sample.where, sample.id, f"{regions.num_classes} detector classes, expected "
                               f"{settings.mrc['num_classes']}", file=sample.image)
    if tokens is not None:
        dim = tokens.shape[1]
        settings.audio_dim = settings.audio_dim or dim
        if dim != settings.audio_dim:
            return Problem(sample.where, sample.id, f"audio features have dim {dim}, expected {settings.audio_dim}",
                           file=sample.audio)
    return None


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
           "image_feat": empty_f, "image_boxes": empty_f, "image_classes": np.zeros(0, np.int32), "n_regions": 0,
           "image_thumb": b"", "audio_feat": empty_f, "n_audio": 0,
           "labels": np.asarray([label_ids[l] for l in sample.labels], np.int32), "n_labels": len(sample.labels)}
    if regions is not None:
        # classes are None only when the reference set had no images at all (mrc source "none": one class)
        classes = regions.classes if regions.classes is not None else np.zeros(len(regions.features), np.int32)
        row.update(image_feat=regions.features.reshape(-1), image_boxes=regions.boxes.reshape(-1),
                   image_classes=classes.astype(np.int32), n_regions=len(regions.features),
                   image_thumb=regions.thumb.tobytes() if regions.thumb is not None else b"")
    if tokens is not None:
        row.update(audio_feat=tokens.reshape(-1), n_audio=len(tokens))
    return row


# ----------------------------------------------------------------------------------------------------------------------
# Output directory handling: reuse, interrupted runs, atomic replacement
# ----------------------------------------------------------------------------------------------------------------------
def _fingerprint(source: str, fmt: str, split: str, samples: List[Sample], settings: Settings, on_error: str) -> str:
    h = hashlib.sha256()
    h.update(Path(source).read_bytes())
    h.update(json.dumps([fmt, split, on_error, dataclasses.asdict(settings.prepare), settings.like,
                         hashlib.sha256(Path(settings.vocab_path).read_bytes()).hexdigest()]).encode())
    for s in samples:
        for p in (s.image, s.audio):
            if p:
                st = Path(p).stat()
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


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` to `out`; an older `out` is moved aside first and deleted after."""
    old = out.parent / f".{out.name}.old-{mp.current_process().pid}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _progress(total: int):
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="sample", desc="preparing", file=sys.stderr, mininterval=1.0,
                    disable=total < 50)
    except ImportError:  # tqdm is in requirements.txt; keep preparation usable without it
        class _Null:
            update = close = lambda *a, **k: None
        return _Null()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/prepare_data.sh", description=__doc__.split("\n")[0])
    ap.add_argument("source", help="manifest JSONL, COCO captions JSON or Localized Narratives JSONL")
    ap.add_argument("out_dir")
    ap.add_argument("--format", default="manifest", choices=["manifest", "coco", "narratives"])
    ap.add_argument("--split", default="train", help="split of entries that do not name one (default: train)")
    ap.add_argument("--on-error", default="fail", choices=["fail", "skip"])
    ap.add_argument("--like", default=None, help="reuse tokenizer, feature settings, labels and codebook of this "
                                                 "prepared dataset (for evaluation sets)")
    ap.add_argument("--image-dir", default=None, help="COCO / narratives image folder")
    ap.add_argument("--audio-dir", default=None, help="narratives audio folder")
    ap.add_argument("--config", default=None, help="a YAML recipe; its 'prepare' section is used")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. prepare.shards=8 (repeatable)")
    args = ap.parse_args(argv)
    try:
        cfg: Config = load_config(args.config, args.overrides)
        meta = prepare(args.source, args.out_dir, cfg.prepare, args.format, args.split, args.like, args.on_error,
                       args.image_dir, args.audio_dir)
    except (ConfigError, PrepareError, DatasetError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if meta["skipped"]:
        print(f"{len(meta['skipped'])} samples skipped; see 'skipped' in {Path(args.out_dir) / META}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
