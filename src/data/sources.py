"""Readers that turn each supported source format into one stream of `Sample`s.

A reader yields a `Sample` for every usable entry and a `Problem` for every entry it cannot use (invalid JSON, no
modality, empty caption, missing file, duplicate id). The caller decides whether a problem stops the run or is skipped
and reported. Any of image, audio and text may be absent from a sample.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from src.data import archive
from src.data.errors import PrepareError
from src.modality import FURTHER


@dataclass
class Sample:
    id: str
    where: str                    # "file:line" (or "file: annotations[i]") for error messages
    text: Optional[str] = None
    image: Optional[str] = None   # absolute path: an image file or a precomputed-region .npz
    audio: Optional[str] = None   # absolute path: an audio file or a precomputed-frame .npz
    lang: str = "en"
    labels: List[str] = field(default_factory=list)
    split: str = "train"
    further: Dict[str, str] = field(default_factory=dict)  # a further modality's .npz file, by modality (a plugin's)
    # what a format's reader attaches beside the inputs, by the name of the attachment that stores it
    # (src/data/attachments.py): a VQA question's ids and human answers under "vqa"
    attached: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Problem:
    where: str
    id: Optional[str]
    reason: str
    file: Optional[str] = None

    def message(self) -> str:
        parts = [self.where]
        if self.id is not None:
            parts.append(f"sample '{self.id}'")
        if self.file:
            parts.append(self.file)
        return ": ".join(parts) + f": {self.reason}"


Entry = Union[Sample, Problem]


@dataclass(frozen=True)
class SourceFormat:
    """How a source format is read: its reader, and the options it takes on the preparation command line."""
    read: Callable[..., Iterator[Entry]]  # read(path, split, image_dir, audio_dir, **options)
    # its own flags: option string -> argparse settings whose `dest` is the reader's keyword (shown under the format)
    flags: Dict[str, dict] = field(default_factory=dict)
    # a source that is a pattern of files (a glob or a brace list), not one file: the files it stands for
    expand: Optional[Callable[[str], List[str]]] = None
    input_options: Tuple[str, ...] = ()  # options that name a further file the reader reads (fingerprinted)

    @property
    def options(self) -> List[str]:
        return [settings["dest"] for settings in self.flags.values()]

    def files(self, source: str, options: dict) -> List[str]:
        """Every file the source stands for and the reader reads (what a prepared set's fingerprint covers)."""
        listed = self.expand(source) if self.expand else [source]
        return listed + [options[k] for k in self.input_options if options.get(k)]


# format -> how it is read; other modules add theirs (src/data/prepare.py imports them): src/data/vqa.py "vqa",
# src/data/captions.py "karpathy", "aic", "csv", src/data/webdataset.py "webdataset"
FORMATS: Dict[str, SourceFormat] = {
    "manifest": SourceFormat(lambda path, split, image_dir, audio_dir: read_manifest(path, split)),
    "coco": SourceFormat(lambda path, split, image_dir, audio_dir: read_coco(path, split, image_dir)),
    "narratives": SourceFormat(lambda path, split, image_dir, audio_dir: read_narratives(path, split, image_dir,
                                                                                         audio_dir)),
}


def register_format(name: str, fmt: SourceFormat) -> None:
    if name in FORMATS:
        raise ValueError(f"source format '{name}' is registered twice")
    FORMATS[name] = fmt


def read_source(path: str, fmt: str = "manifest", split: str = "train", image_dir: Optional[str] = None,
                audio_dir: Optional[str] = None, **options) -> Iterator[Entry]:
    """Every entry of a source file, checked: ids unique, files present, captions non-empty. `options`: the
    format's own (a VQA questions file's annotations, CSV columns)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown source format '{fmt}' (known: {', '.join(FORMATS)})")
    if FORMATS[fmt].expand is None and not Path(path).is_file():
        raise FileNotFoundError(f"source file not found: {path}")
    foreign = [k for k, v in options.items() if k not in FORMATS[fmt].options and v is not None]
    if foreign:
        owners = [name for name, other in FORMATS.items() if foreign[0] in other.options]
        raise PrepareError(f"'{foreign[0]}' is read with format {' or '.join(owners) or 'none'} only (this source's "
                           f"format: {fmt})")
    own = {k: v for k, v in options.items() if k in FORMATS[fmt].options}
    return checked(FORMATS[fmt].read(path, split, image_dir, audio_dir, **own))


def json_lines(path: str) -> Iterator[Union[Tuple[str, int, dict], Problem]]:
    """(where, line number, object) for every non-blank line that is a JSON object, else a Problem."""
    with open(path, "rb") as f:  # decoded line by line: one line that is not UTF-8 is that line's problem
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Problem(where, None, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield Problem(where, None, f"invalid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(row, dict):
                yield Problem(where, None, f"a line must be a JSON object, got {type(row).__name__}")
                continue
            yield where, lineno, row


def json_document(path: str):
    """The parsed JSON file, or a Problem naming the file (and the line of a syntax error)."""
    if not Path(path).is_file():
        return Problem(path, None, "file not found")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        return Problem(f"{path}:{e.lineno}", None, f"invalid JSON ({e.msg} at column {e.colno})")
    except UnicodeDecodeError as e:
        return Problem(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})")


def read_manifest(path: str, split: str = "train") -> Iterator[Entry]:
    """JSON Lines: {"id", "image", "audio", "text", "lang", "labels", "split"} (and a further modality's .npz file
    under its name); paths relative to the manifest."""
    base = Path(path).resolve().parent
    for item in json_lines(path):
        yield item if isinstance(item, Problem) else _manifest_sample(item[2], item[0], base, split)


def _manifest_sample(row: dict, where: str, base: Path, split: str) -> Entry:
    sid = row.get("id")
    if sid is None or str(sid).strip() == "":
        return Problem(where, None, "missing 'id'")
    sid = str(sid)
    labels = row.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        return Problem(where, sid, "'labels' must be a list of strings")
    for key in ("text", "image", "audio", "lang", "split") + FURTHER:
        if row.get(key) is not None and not isinstance(row[key], str):
            return Problem(where, sid, f"'{key}' must be a string, got {type(row[key]).__name__}")
    try:
        image, audio = _resolve(base, row.get("image")), _resolve(base, row.get("audio"))
        further = {m: _resolve(base, row[m]) for m in FURTHER if row.get(m)}
    except (OSError, RuntimeError) as e:  # a symlink loop, a name too long for the file system
        return Problem(where, sid, f"cannot resolve its file path ({e})")
    return Sample(id=sid, where=where, text=row.get("text"), image=image, audio=audio,
                  lang=row.get("lang") or "en", labels=labels, split=row.get("split") or split, further=further)


def read_coco(path: str, split: str = "train", image_dir: Optional[str] = None) -> Iterator[Entry]:
    """COCO captions JSON: one sample per annotation; images are looked up in `image_dir` (default: beside the JSON)."""
    doc = json_document(path)
    if isinstance(doc, Problem):
        yield doc
        return
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        yield Problem(path, None, "a COCO captions file needs 'images' and 'annotations'")
        return
    folder = Path(image_dir).resolve() if image_dir else Path(path).resolve().parent
    files = {img.get("id"): img.get("file_name") for img in doc["images"] if isinstance(img, dict)}
    for i, ann in enumerate(doc["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(ann, dict) or "image_id" not in ann:
            yield Problem(where, None, "annotation without 'image_id'")
            continue
        sid = str(ann.get("id", f"{ann['image_id']}_{i}"))
        name = files.get(ann["image_id"])
        if name is None:
            yield Problem(where, sid, f"image_id {ann['image_id']} is not in 'images'")
            continue
        yield Sample(id=sid, where=where, text=ann.get("caption"), image=str(folder / name), split=split)


def read_narratives(path: str, split: str = "train", image_dir: Optional[str] = None,
                    audio_dir: Optional[str] = None) -> Iterator[Entry]:
    """Localized Narratives JSON Lines: caption, voice_recording (relative to `audio_dir`), image_id (in
    `image_dir`)."""
    base = Path(path).resolve().parent
    images = Path(image_dir).resolve() if image_dir else base / "images"
    audios = Path(audio_dir).resolve() if audio_dir else base / "audio"
    for item in json_lines(path):
        if isinstance(item, Problem):
            yield item
            continue
        where, lineno, row = item
        if "image_id" not in row:
            yield Problem(where, None, "a narrative needs 'image_id'")
            continue
        image_id = str(row["image_id"])
        sid = f"{image_id}_{row.get('annotator_id', lineno)}"
        voice = row.get("voice_recording")
        yield Sample(id=sid, where=where, text=row.get("caption"), image=_find_image(images, image_id),
                     audio=str(audios / voice) if voice else None, split=split)


def _find_image(folder: Path, image_id: str) -> str:
    """Open Images names files by id; COCO zero-pads numeric ids to 12 digits."""
    stems = [image_id] + ([image_id.zfill(12)] if image_id.isdigit() else [])
    for stem in stems:
        for ext in (".jpg", ".jpeg", ".png", ".webp"):
            if (folder / (stem + ext)).is_file():
                return str(folder / (stem + ext))
    return str(folder / (image_id + ".jpg"))  # reported as missing by the checks


def _resolve(base: Path, rel: Optional[str]) -> Optional[str]:
    return str((base / rel).resolve()) if rel else None


def checked(entries: Iterator[Entry]) -> Iterator[Entry]:
    """Turn samples with a duplicate id, no modality, an empty caption or a missing file into problems."""
    first_seen = {}
    for e in entries:
        if isinstance(e, Problem):
            yield e
            continue
        if e.id in first_seen:
            yield Problem(e.where, e.id, f"duplicate id (first seen at {first_seen[e.id]})")
            continue
        first_seen[e.id] = e.where
        if e.text is not None and not e.text.strip():
            yield Problem(e.where, e.id, "empty caption")
            continue
        if e.text is None and e.image is None and e.audio is None and not e.further:
            yield Problem(e.where, e.id, "no text, image or audio")
            continue
        missing = next((p for p in (e.image, e.audio, *e.further.values()) if p is not None and not archive.exists(p)),
                       None)
        if missing:
            yield Problem(e.where, e.id, "file not found", file=missing)
            continue
        yield e
