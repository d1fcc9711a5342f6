"""Model inputs from files: one row built from a caption, an image file and / or an audio file, with the features
extracted exactly as for the data the model was trained on (its prepared directory's settings)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from src.config import Config
from src.data.errors import ExtractorUnavailable, FeatureError
from src.data.extractors import audio_tokens_files, image_regions_files
from src.data.padding import Padder, empty_row, stack_rows
from src.data.prepare import settings_like
from src.data.tokenizer import prepared_tokenizer
from src.modality import COLUMNS_OF, INPUT_COLUMNS


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".npz")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".npz")
LIST_EXTENSIONS = (".txt", ".lst")


def is_many(path: Optional[str]) -> bool:
    """A folder or a list file (.txt / .lst of paths): many inputs for one call."""
    return bool(path) and (Path(path).is_dir() or Path(path).suffix.lower() in LIST_EXTENSIONS)


def input_files(path: str, extensions: Sequence[str]) -> List[str]:
    """The inputs `path` names: a folder's files with `extensions` (sorted, not recursive), a list file's lines (paths
    relative to the list's folder; blank lines and # comments skipped), else the file itself."""
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in extensions)
        if not files:
            raise FileNotFoundError(f"{path}: no file with {', '.join(extensions)} in this folder")
        return files
    if p.suffix.lower() in LIST_EXTENSIONS:
        if not p.is_file():
            raise FileNotFoundError(f"list of inputs not found: {path}")
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
        return [str(p.parent / line) for line in lines if line and not line.startswith("#")]
    return [path]


def files_inputs(data, cfg: Config, images: Sequence[Optional[str]] = (), audios: Sequence[Optional[str]] = (),
                 warn=_to_stderr) -> Tuple[tuple, List[Optional[str]]]:
    """Model inputs of many rows at once, row i from images[i] and/or audios[i] (either list may be empty), features
    extracted as for the model's training data, the image network over whole batches; and per row None or the error
    that left it without input (it is then a padding row, its output to be dropped)."""
    prep = settings_like(cfg.data.path, cfg.prepare).prepare
    n = max(len(images), len(audios))
    images, audios = list(images) or [None] * n, list(audios) or [None] * n
    try:
        regions = dict(zip([i for i, p in enumerate(images) if p],
                           image_regions_files([p for p in images if p], prep.image)))
        tokens = dict(zip([i for i, p in enumerate(audios) if p],
                          audio_tokens_files([p for p in audios if p], prep.audio)))
    except ExtractorUnavailable as e:  # not preparation's alternative: the model reads what its data was made of
        raise ExtractorUnavailable(f"{e} (the model was trained on data prepared with this extractor; its input "
                                   "files need the same)") from None
    rows, errors = [], []
    for i in range(n):
        failed = next((str(x) for x in (regions.get(i), tokens.get(i)) if isinstance(x, FeatureError)), None)
        errors.append(failed)
        row = empty_row(i)
        if failed is None and i in regions:  # MRC targets are for training only: zeros
            r, k = regions[i], data.mrc_top_k
            row.update(image_feat=r.features.reshape(-1), image_boxes=r.boxes.reshape(-1),
                       mrc_ids=np.zeros(len(r.features) * k, np.int32),
                       mrc_probs=np.zeros(len(r.features) * k, np.float32), n_regions=len(r.features))
        if failed is None and i in tokens:
            t, cut = tokens[i]
            row.update(audio_feat=t.reshape(-1), n_audio=len(t))
            warning = audio_cut_warning(audios[i], len(t), cut, cfg.data.max_audio_tokens, data.audio_token_seconds())
            if warning:
                warn(warning)
        rows.append(row)
    batch = Padder(data, cfg.data)(n, stack_rows(rows))
    return tuple(batch[c] for c in INPUT_COLUMNS), errors


def file_inputs(data, cfg: Config, image: str = None, audio: str = None, text: str = None, lang: str = "en",
                warn=_to_stderr) -> tuple:
    """One row of model inputs (batch of 1) from a caption, an image and/or an audio file; what is cut to fit the
    model goes to warn()."""
    if image or audio:
        inputs, errors = files_inputs(data, cfg, [image] if image else [], [audio] if audio else [], warn)
        if errors[0]:
            raise FeatureError(errors[0])
    else:
        row = Padder(data, cfg.data)(1, stack_rows([empty_row()]))
        inputs = tuple(row[c] for c in INPUT_COLUMNS)
    if text:
        ids = np.asarray(prepared_tokenizer(data).encode(text, lang), np.int32)
        if len(ids) > cfg.data.max_text_len - 2:
            warn(f"warning: the caption has {len(ids)} word pieces, the model reads the first "
                 f"{cfg.data.max_text_len - 2} (data.max_text_len={cfg.data.max_text_len})")
        text_row = Padder(data, cfg.data)(1, stack_rows([{**empty_row(), "text_ids": ids, "n_text": len(ids)}]))
        inputs = tuple(text_row[c] if c in COLUMNS_OF["text"] else x for c, x in zip(INPUT_COLUMNS, inputs))
    return inputs


def audio_cut_warning(path: str, n_tokens: int, seconds_cut: float, max_tokens: int, token_seconds: float):
    """The warning for a recording longer than the model hears, or None."""
    total = n_tokens * token_seconds + seconds_cut
    heard = min(n_tokens, max_tokens) * token_seconds
    if total - heard < token_seconds / 2:
        return None
    return (f"warning: {path}: {total:.2f} s of audio, the model hears the first {heard:.2f} s "
            f"(data.max_audio_tokens={max_tokens}); the last {total - heard:.2f} s are cut")
