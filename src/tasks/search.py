"""Search a gallery with a trained retrieval model: embed the gallery once into an index folder, then answer queries
from it as evaluation ranks (src/tasks/retrieval_eval.py): cosine over the index first, then the cross-encoder
reranks the top eval.rerank_k by its logit + eval.rerank_fusion x the cosine.

    python infer.py --ckpt RUN --gallery photos/ --index INDEX            # or a .txt list, or PREPARED [--split val]
    python infer.py --index INDEX --text "a dog on a beach" [--top 10]    # or --image F / --audio F / --queries F

An index folder holds index.json (the run, the gallery's modality, its files), embeddings.npy (unit-length, one row
per gallery file) and inputs.npz (the gallery's model inputs, which the cross-encoder reads); it is written whole or
not at all.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from src.config import Config, ConfigError
from src.data.errors import FeatureError
from src.data.records import DatasetError, open_prepared, write_json_atomic
from src.data.extractors import input_name
from src.infer.file_inputs import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, files_inputs, input_files
from src.infer.graphs import match_graph
from src.infer.items import content_codes, load_items, modalities_of, run_batched
from src.infer.retrieval import normalise
from src.modality import COLUMNS_OF, INPUT_COLUMNS, MODALITIES
from src.tasks.registry import Flags, Task, register

INDEX = "index.json"


def lines_of(path: str) -> List[str]:
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def caption_inputs(data, cfg: Config, captions: List[str], lang: str) -> Dict[str, np.ndarray]:
    """Model inputs of captions, one row each."""
    return dict(zip(INPUT_COLUMNS, files_inputs(data, cfg, texts=captions, lang=lang)[0]))


def embed_rows(graphs, cfg: Config, texts: Sequence[str] = (), images: Sequence = (), audios: Sequence = (),
               lang: str = "en") -> Dict[str, np.ndarray]:
    """Unit-length embeddings [N, embed_dim] of each modality given, by modality ("text", "image", "audio"); the
    lists are independent (images and recordings as files, their bytes or decoded arrays). An input that cannot be
    read raises its FeatureError."""
    data, out = graphs.data(cfg), {}
    for modality, given, key in (("text", texts, "texts"), ("image", images, "images"), ("audio", audios, "audios")):
        if not len(given):
            continue
        inputs, errors = files_inputs(data, cfg, **{key: list(given)}, lang=lang)
        if any(errors):
            raise FeatureError(next(e for e in errors if e))
        embedded = run_batched(graphs["embed"], len(given), min(cfg.eval.batch_size, len(given)),
                               lambda rows: tuple(x[rows] for x in inputs))
        out[modality] = normalise(embedded[MODALITIES.index(modality)])
    return out


def gallery_inputs(args, graphs, cfg: Config) -> Tuple[str, List[str], Dict[str, np.ndarray], List[str]]:
    """(modality, file or item names, model inputs of each, errors) of --gallery: a prepared set's split (its
    distinct inputs of --gallery-modality), a folder or list of image or audio files, or a text file of captions
    (--gallery-modality text)."""
    gallery = args.gallery
    if (Path(gallery) / "meta.json").is_file():
        data = open_prepared(gallery)
        split = args.split or cfg.data.eval_split
        modality = args.gallery_modality or "image"
        items = load_items(data, cfg.data, split)
        has = np.flatnonzero(items.present()[:, MODALITIES.index(modality)])
        _, first = np.unique(content_codes(items, (modality,))[has], return_index=True)
        rows = has[np.sort(first)]
        ids = data.read_columns(split, ["id"])["id"]
        return modality, [str(ids[i]) for i in items.index[rows]], {c: items.inputs[c][rows] for c in INPUT_COLUMNS}, []
    data = graphs.data(cfg)
    if args.gallery_modality == "text":
        captions = lines_of(gallery)
        return "text", captions, caption_inputs(data, cfg, captions, args.lang), []
    files = input_files(gallery, IMAGE_EXTENSIONS + AUDIO_EXTENSIONS)
    kinds = {"audio" if Path(f).suffix.lower() in AUDIO_EXTENSIONS[:-1] else "image" for f in files}
    if len(kinds) > 1:
        raise ConfigError(f"{gallery}: a gallery holds one modality (found images and recordings)")
    modality = args.gallery_modality or kinds.pop()
    inputs, errors = files_inputs(data, cfg, **{f"{modality}s": files})
    ok = [i for i, e in enumerate(errors) if e is None]
    if not ok:
        raise DatasetError(f"{gallery}: no readable {modality} file (first error: {errors[0]})")
    return (modality, [files[i] for i in ok], {c: x[ok] for c, x in zip(INPUT_COLUMNS, inputs)},
            [e for e in errors if e])


def build_index(args, graphs, cfg: Config) -> List[str]:
    modality, names, inputs, errors = gallery_inputs(args, graphs, cfg)
    embedded = run_batched(graphs["embed"], len(names), cfg.eval.batch_size,
                           lambda rows: tuple(inputs[c][rows] for c in INPUT_COLUMNS))
    embeddings = normalise(embedded[MODALITIES.index(modality)])
    out = Path(args.index)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "embeddings.npy", embeddings)
    np.savez(tmp / "inputs.npz", **{c: inputs[c] for c in COLUMNS_OF[modality]})
    # the checkpoint absolute: the index answers from any working directory
    write_json_atomic(tmp / INDEX, {"checkpoint": str(Path(graphs.checkpoint).resolve()), "modality": modality,
                                    "count": len(names), "files": names, "skipped": errors,
                                    "gallery": str(Path(args.gallery).resolve())})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    lines = [f"indexed {len(names)} {modality} inputs of {args.gallery} into {out}"]
    return lines + [f"skipped: {e}" for e in errors]


def load_index(path: str) -> Tuple[dict, np.ndarray, Dict[str, np.ndarray]]:
    root = Path(path)
    if not (root / INDEX).is_file():
        raise FileNotFoundError(f"no search index at {path} (make one with infer.py --ckpt RUN --gallery ... --index "
                                f"{path})")
    meta = json.loads((root / INDEX).read_text(encoding="utf-8"))
    with np.load(root / "inputs.npz") as stored:
        inputs = {c: stored[c] for c in stored.files}
    return meta, np.load(root / "embeddings.npy"), inputs


def query_rows(args, graphs, cfg: Config) -> Tuple[str, List[str], Dict[str, np.ndarray]]:
    """(modality, the queries as shown, their model inputs) of --text, --image, --audio or --queries (a text file of
    captions, one a line)."""
    if args.queries or args.text is not None:
        texts = lines_of(args.queries) if args.queries else [args.text]
        return query_inputs(graphs, cfg, texts=texts, lang=args.lang)
    return query_inputs(graphs, cfg, images=[args.image] if args.image else (),
                        audios=[args.audio] if args.audio else ())


def search(args, graphs, cfg: Config) -> List[str]:
    """infer.py on a retrieval run: with --gallery, index it; else answer the query from --index, a JSON line per
    result {"query", "rank", "file", "score", "cosine"}, best first."""
    if args.gallery:
        if not args.index:
            raise ConfigError("--gallery needs --index FOLDER: where to write the index")
        return build_index(args, graphs, cfg)
    if not args.index:
        raise ConfigError("search reads --index FOLDER (made with --gallery) and a query: --text, --image, --audio or "
                          "--queries")
    modality, shown, query = query_rows(args, graphs, cfg)
    return [json.dumps(result, ensure_ascii=False)
            for results in ranked(graphs, cfg, args.index, modality, shown, query, args.top) for result in results]


def ranked(graphs, cfg: Config, index: str, modality: str, shown: List[str], query: Dict[str, np.ndarray],
           top: int) -> List[List[dict]]:
    """The `top` results of each query (its model inputs `query`, of `modality`; `shown` as the results name it) in
    the index folder `index`, best first: {"query", "rank", "file", "score", "cosine"}."""
    meta, gallery, stored = load_index(index)
    if modality == meta["modality"]:
        raise ConfigError(f"the index holds {modality} inputs: ask with another modality")
    q_embedded = run_batched(graphs["embed"], len(shown), min(cfg.eval.batch_size, len(shown)),
                             lambda rows: tuple(query[c][rows] for c in INPUT_COLUMNS))
    cosines = normalise(q_embedded[MODALITIES.index(modality)]) @ gallery.T
    match = graphs[match_graph(modalities_of((modality, meta["modality"])))]
    k = min(cfg.eval.rerank_k, len(gallery))
    out = []
    for q, text in enumerate(shown):
        order = np.argsort(-cosines[q], kind="stable")
        best = order[:k]

        def pair(rows, best=best, q=q):  # the query's columns beside each candidate's
            return tuple(stored[c][best[rows]] if c in stored else query[c][np.full(len(rows), q)]
                         for c in INPUT_COLUMNS)
        cross = run_batched(match, k, cfg.eval.batch_size, pair)[0] if k else np.zeros(0)
        fused = cross + cfg.eval.rerank_fusion * cosines[q, best]
        order = list(best[np.argsort(-fused, kind="stable")]) + list(order[k:])
        scores = dict(zip(best.tolist(), fused.tolist()))
        out.append([{"query": text, "rank": rank, "file": meta["files"][g],
                     "score": round(scores[int(g)], 5) if int(g) in scores else None,
                     "cosine": round(float(cosines[q, g]), 5)} for rank, g in enumerate(order[:top], 1)])
    return out


def query_inputs(graphs, cfg: Config, texts: Sequence[str] = (), images: Sequence = (), audios: Sequence = (),
                 lang: str = "en") -> Tuple[str, List[str], Dict[str, np.ndarray]]:
    """(modality, the queries as results name them, their model inputs) of queries of one modality: captions, or
    images or recordings as files, their bytes or decoded arrays."""
    given = [(m, items) for m, items in (("text", texts), ("image", images), ("audio", audios)) if len(items)]
    if len(given) != 1:
        raise ConfigError("search: give queries of one modality (texts, images or audios)")
    (modality, items), = given
    inputs, errors = files_inputs(graphs.data(cfg), cfg, **{f"{modality}s": list(items)}, lang=lang)
    if any(errors):
        raise FeatureError(next(e for e in errors if e))
    shown = [str(item) if isinstance(item, (str, Path)) else input_name(item, i) for i, item in enumerate(items)]
    return modality, shown, dict(zip(INPUT_COLUMNS, inputs))


def add_infer_flags(group) -> None:
    group.add_argument("--gallery", default=None, help="a folder or list of images or recordings, a text file of "
                                                       "captions (--gallery-modality text) or a prepared set, to index")
    group.add_argument("--gallery-modality", default=None, choices=["image", "audio", "text"],
                       help="what the gallery holds (default: from its files; a prepared set: image)")
    group.add_argument("--split", default=None, help="the split of a prepared gallery (default data.eval_split)")
    group.add_argument("--index", default=None, help="the index folder to write (with --gallery) or to ask")
    group.add_argument("--queries", default=None, help="a text file of captions to ask, one a line")
    group.add_argument("--top", type=int, default=10, help="results per query")


def index_checkpoint(parser, args) -> None:
    """A query that names no --ckpt runs on the checkpoint its index was made with (its index.json)."""
    if not args.index or args.gallery or args.ckpt or args.mindir:
        return
    meta = Path(args.index) / "index.json"
    if not meta.is_file():
        parser.error(f"no search index at {args.index} (make one with --ckpt RUN --gallery FILES --index "
                     f"{args.index})")
    args.ckpt = json.loads(meta.read_text(encoding="utf-8"))["checkpoint"]


FLAGS = Flags(add_infer_flags, gives_input=lambda args: bool(args.gallery or (args.index and args.queries)),
              complete=index_checkpoint)
register(Task("search", __name__, infer=search, graphs_of="retrieval", infer_from=("retrieval",),
              flags={"infer": FLAGS},
              help="search a gallery: index it once (--gallery, --index), then rank it for a query"))
