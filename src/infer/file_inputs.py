"""Model inputs from files: one row built from a caption, an image file and / or an audio file, with the features
extracted exactly as for the data the model was trained on (its prepared directory's settings)."""
from __future__ import annotations

import sys

import numpy as np

from src.config import Config
from src.data.errors import FeatureError
from src.data.extractors import audio_tokens, image_regions
from src.data.padding import Padder
from src.data.prepare import settings_like
from src.data.tokenizer import prepared_tokenizer
from src.modality import INPUT_COLUMNS


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def file_inputs(data, cfg: Config, image: str = None, audio: str = None, text: str = None, lang: str = "en",
                warn=_to_stderr) -> tuple:
    """One row of model inputs (batch of 1) from a caption, an image and/or an audio file; what is cut to fit the
    model goes to warn()."""
    prep = settings_like(cfg.data.path).prepare
    empty = np.zeros(0, np.float32)
    no_mrc = np.zeros(0, np.int32)  # MRC targets are for training; inference rows carry none
    row = dict(index=[0], text_ids=[np.zeros(0, np.int32)], n_text=[0], image_feat=[empty], image_boxes=[empty],
               mrc_ids=[no_mrc], mrc_probs=[empty], n_regions=[0], audio_feat=[empty], n_audio=[0])
    warnings = []
    if text:
        ids = np.asarray(prepared_tokenizer(data).encode(text, lang), np.int32)
        row.update(text_ids=[ids], n_text=[len(ids)])
        if len(ids) > cfg.data.max_text_len - 2:
            warnings.append(f"warning: the caption has {len(ids)} word pieces, the model reads the first "
                            f"{cfg.data.max_text_len - 2} (data.max_text_len={cfg.data.max_text_len})")
    if image:
        regions = _read(image_regions, image, prep.image)
        k, n = data.mrc_top_k, len(regions.features)
        row.update(image_feat=[regions.features.reshape(-1)], image_boxes=[regions.boxes.reshape(-1)],
                   mrc_ids=[np.zeros(n * k, np.int32)], mrc_probs=[np.zeros(n * k, np.float32)], n_regions=[n])
    if audio:
        tokens, cut_seconds = _read(audio_tokens, audio, prep.audio)
        row.update(audio_feat=[tokens.reshape(-1)], n_audio=[len(tokens)])
        warnings.append(audio_cut_warning(audio, len(tokens), cut_seconds, cfg.data.max_audio_tokens,
                                          data.audio_token_seconds()))
    for warning in warnings:
        if warning:
            warn(warning)
    batch = Padder(data, cfg.data)(1, **row)
    return tuple(batch[c] for c in INPUT_COLUMNS)


def _read(extract, path: str, cfg):
    try:
        return extract(path, cfg)
    except FeatureError as e:
        raise FeatureError(f"{path}: {e}") from None


def audio_cut_warning(path: str, n_tokens: int, seconds_cut: float, max_tokens: int, token_seconds: float):
    """The warning for a recording longer than the model hears, or None."""
    total = n_tokens * token_seconds + seconds_cut
    heard = min(n_tokens, max_tokens) * token_seconds
    if total - heard < token_seconds / 2:
        return None
    return (f"warning: {path}: {total:.2f} s of audio, the model hears the first {heard:.2f} s "
            f"(data.max_audio_tokens={max_tokens}); the last {total - heard:.2f} s are cut")
