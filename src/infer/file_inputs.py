"""Model inputs from files: one row built from a caption, an image file and / or an audio file, with the features
extracted exactly as for the data the model was trained on (its prepared directory's settings)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from src.config import Config
from src.data.errors import ExtractorUnavailable, FeatureError
from src.data.extractors import audio_tokens_files, image_regions_files, input_name
from src.data.padding import Padder, empty_row, stack_rows
from src.data.prepare import settings_like
from src.data.tokenizer import prepared_tokenizer
from src.modality import INPUT_COLUMNS


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


def files_inputs(data, cfg: Config, images: Sequence = (), audios: Sequence = (), texts: Sequence[str] = (),
                 lang: str = "en", warn=_to_stderr) -> Tuple[tuple, List[Optional[str]]]:
    """Model inputs of many rows at once, row i from images[i], audios[i] and/or texts[i] (any list may be empty; an
    image or audio item is a file, its bytes or a decoded array, src/data/extractors.py, or None for none), features
    extracted as for the model's training data, the image network over whole batches; and per row None or the error
    that left it without input (it is then a padding row, its output to be dropped). What is cut to fit the model
    goes to warn()."""
    prep = settings_like(cfg.data.path, cfg.prepare).prepare
    n = max(len(images), len(audios), len(texts))
    images, audios = list(images) or [None] * n, list(audios) or [None] * n
    given_images = [i for i, item in enumerate(images) if item is not None]
    given_audios = [i for i, item in enumerate(audios) if item is not None]
    try:
        regions = dict(zip(given_images, image_regions_files([images[i] for i in given_images], prep.image)))
        tokens = dict(zip(given_audios, audio_tokens_files([audios[i] for i in given_audios], prep.audio)))
    except ExtractorUnavailable as e:  # not preparation's alternative: the model reads what its data was made of
        raise ExtractorUnavailable(f"{e} (the model was trained on data prepared with this extractor; its input "
                                   "files need the same)") from None
    tokenizer = prepared_tokenizer(data) if len(texts) else None
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
            warning = audio_cut_warning(input_name(audios[i], i), len(t), cut, cfg.data.max_audio_tokens,
                                        data.audio_token_seconds())
            if warning:
                warn(warning)
        if failed is None and tokenizer is not None and texts[i]:
            ids = np.asarray(tokenizer.encode(texts[i], lang), np.int32)
            if len(ids) > cfg.data.max_text_len - 2:
                warn(f"warning: the caption has {len(ids)} word pieces, the model reads the first "
                     f"{cfg.data.max_text_len - 2} (data.max_text_len={cfg.data.max_text_len})")
            row.update(text_ids=ids, n_text=len(ids))
        rows.append(row)
    batch = Padder(data, cfg.data)(n, stack_rows(rows))
    return tuple(batch[c] for c in INPUT_COLUMNS), errors


def file_inputs(data, cfg: Config, image=None, audio=None, text: str = None, lang: str = "en",
                warn=_to_stderr) -> tuple:
    """One row of model inputs (batch of 1) from a caption, an image and/or an audio file; what is cut to fit the
    model goes to warn()."""
    inputs, errors = files_inputs(data, cfg, [] if image is None else [image], [] if audio is None else [audio],
                                  [text or ""], lang, warn)
    if errors[0]:
        raise FeatureError(errors[0])
    return inputs


def audio_cut_warning(path: str, n_tokens: int, seconds_cut: float, max_tokens: int, token_seconds: float):
    """The warning for a recording longer than the model hears, or None."""
    total = n_tokens * token_seconds + seconds_cut
    heard = min(n_tokens, max_tokens) * token_seconds
    if total - heard < token_seconds / 2:
        return None
    return (f"warning: {path}: {total:.2f} s of audio, the model hears the first {heard:.2f} s "
            f"(data.max_audio_tokens={max_tokens}); the last {total - heard:.2f} s are cut")
