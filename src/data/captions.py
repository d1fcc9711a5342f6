"""Image-caption sources as their publishers write them: the Karpathy split JSON (COCO, Flickr30k, Flickr8k), AIC-ICC
(AI Challenger, Chinese) and CSV/TSV tables of image paths and captions (open_clip's format).

Every caption is one sample with its image; the captions of one image share the image file, which is what makes them
one image's positives in retrieval (src/data/content.py).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator, Optional

from src.data.sources import Entry, Problem, Sample, SourceFormat, json_document, register_format

# Karpathy's splits -> prepared splits: restval is the part of COCO val2014 that trains
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def read_karpathy(path: str, image_dir: Optional[str] = None) -> Iterator[Entry]:
    """dataset_coco.json / dataset_flickr30k.json: every sentence of every image, in the image's own split. Images
    are looked up as IMAGE_DIR/filepath/filename (COCO's filepath names val2014 or train2014), else
    IMAGE_DIR/filename; IMAGE_DIR defaults to the JSON's folder."""
    doc = json_document(path)
    if isinstance(doc, Problem):
        yield doc
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        yield Problem(path, None, "a Karpathy split file is an object with an 'images' list")
        return
    folder = Path(image_dir).resolve() if image_dir else Path(path).resolve().parent
    for i, image in enumerate(doc["images"]):
        yield from _karpathy_image(image, f"{path}: images[{i}]", folder)


def _karpathy_image(image, where: str, folder: Path) -> Iterator[Entry]:
    if not isinstance(image, dict):
        yield Problem(where, None, f"an image must be an object, got {type(image).__name__}")
        return
    name, split = image.get("filename"), image.get("split")
    image_key = str(image.get("cocoid", image.get("imgid", "")))
    if not isinstance(name, str) or not name:
        yield Problem(where, image_key or None, "'filename' must be a non-empty string")
        return
    if split not in KARPATHY_SPLITS:
        yield Problem(where, image_key or None, f"'split' must be one of {', '.join(KARPATHY_SPLITS)}, got {split!r}")
        return
    sentences = image.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        yield Problem(where, image_key or None, "'sentences' must be a non-empty list")
        return
    file = _first_existing([folder / image.get("filepath", "") / name, folder / name])
    for k, sentence in enumerate(sentences):
        text = _sentence_text(sentence)
        sid = str(sentence.get("sentid", f"{image_key}_{k}")) if isinstance(sentence, dict) else f"{image_key}_{k}"
        if text is None:
            yield Problem(f"{where}.sentences[{k}]", sid, "a sentence needs a 'raw' string (or a 'tokens' list)")
            continue
        yield Sample(id=sid, where=f"{where}.sentences[{k}]", text=text, image=file, split=KARPATHY_SPLITS[split])


def _sentence_text(sentence) -> Optional[str]:
    if not isinstance(sentence, dict):
        return None
    if isinstance(sentence.get("raw"), str):
        return sentence["raw"].strip()
    tokens = sentence.get("tokens")
    if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
        return " ".join(tokens)
    return None


def read_aic(path: str, split: str = "train", image_dir: Optional[str] = None) -> Iterator[Entry]:
    """AIC-ICC caption JSON: a list of {"url", "image_id": "<file>.jpg", "caption": [sentences]}, Chinese; images in
    IMAGE_DIR (default: the JSON's folder)."""
    doc = json_document(path)
    if isinstance(doc, Problem):
        yield doc
        return
    if not isinstance(doc, list):
        yield Problem(path, None, "an AIC-ICC caption file is a JSON list of {image_id, caption} objects")
        return
    folder = Path(image_dir).resolve() if image_dir else Path(path).resolve().parent
    for i, entry in enumerate(doc):
        where = f"{path}: [{i}]"
        name = entry.get("image_id") if isinstance(entry, dict) else None
        captions = entry.get("caption") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            yield Problem(where, None, "an entry needs an 'image_id' file name")
            continue
        if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
            yield Problem(where, name, "'caption' must be a non-empty list of strings")
            continue
        stem = Path(name).stem
        for k, caption in enumerate(captions):
            # AIC captions carry stray line breaks and spaces inside the sentence
            text = "".join(caption.split())
            yield Sample(id=f"{stem}_{k}", where=f"{where}.caption[{k}]", text=text, image=str(folder / name),
                         lang="zh", split=split)


def read_table(path: str, split: str = "train", image_dir: Optional[str] = None, image_key: str = "filepath",
               caption_key: str = "title", separator: Optional[str] = None, audio_key: str = "",
               lang: str = "en") -> Iterator[Entry]:
    """A CSV or TSV with a header row: a column of image paths (relative to IMAGE_DIR, default the table's folder)
    and a column of captions, optionally one of audio paths and a 'split' column. The separator defaults to a tab for
    .tsv and a comma otherwise."""
    sep = separator or ("\t" if path.lower().endswith(".tsv") else ",")
    folder = Path(image_dir).resolve() if image_dir else Path(path).resolve().parent
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=sep)
        columns = reader.fieldnames or []
        missing = [k for k in (image_key, caption_key, audio_key) if k and k not in columns]
        if missing:
            yield Problem(f"{path}:1", None, f"no column {', '.join(map(repr, missing))} in the header (columns: "
                          f"{', '.join(map(repr, columns))}; choose with --csv-img-key / --csv-caption-key)")
            return
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row or any(v is None for v in row.values()):
                    yield Problem(where, None, f"expected {len(columns)} fields separated by {sep!r}")
                    continue
                yield _table_sample(row, where, folder, image_key, caption_key, audio_key, lang, split)
        except (csv.Error, UnicodeDecodeError) as e:
            yield Problem(f"{path}:{reader.line_num + 1}", None, f"unreadable row ({e})")


def _table_sample(row: dict, where: str, folder: Path, image_key: str, caption_key: str, audio_key: str, lang: str,
                  split: str) -> Entry:
    image, audio = row[image_key].strip(), row[audio_key].strip() if audio_key else ""
    if not image and not audio:
        return Problem(where, None, f"no file in '{image_key}'" + (f" or '{audio_key}'" if audio_key else ""))
    sid = row.get("id", "").strip() or where.rsplit(":", 1)[1]
    return Sample(id=sid, where=where, text=row[caption_key], image=str(folder / image) if image else None,
                  audio=str(folder / audio) if audio else None, lang=row.get("lang", "").strip() or lang,
                  split=row.get("split", "").strip() or split)


def _first_existing(paths) -> str:
    """The first path that is a file, else the first (reported as missing by the checks)."""
    return str(next((p for p in paths if p.is_file()), paths[0]))


register_format("karpathy", SourceFormat(lambda path, split, image_dir, audio_dir: read_karpathy(path, image_dir)))
register_format("aic", SourceFormat(lambda path, split, image_dir, audio_dir: read_aic(path, split, image_dir)))
register_format("csv", SourceFormat(lambda path, split, image_dir, audio_dir, **columns: read_table(
    path, split, image_dir, **columns), flags={
        "--csv-img-key": dict(dest="image_key", default="filepath", help="the column of image paths (default: "
                                                                          "filepath)"),
        "--csv-caption-key": dict(dest="caption_key", default="title", help="the column of captions (default: "
                                                                             "title)"),
        "--csv-audio-key": dict(dest="audio_key", default="", help="a column of audio paths (default: none)"),
        "--csv-separator": dict(dest="separator", default=None, help="the field separator (default: a tab for .tsv, "
                                                                      "else a comma)")}))
