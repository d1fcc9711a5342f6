"""Text generation evaluation: decode a split from one input set and score it (BLEU-1..4, CIDEr-D, WER, CER).

The references of an item are the texts of every item whose decoded input is identical (an image with an English and
a Chinese caption has both; a spoken caption has its own text). Scores are given overall and per language.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np

from src.config import Config, ConfigError
from src.data.errors import FeatureError
from src.data.records import DatasetError
from src.data.tokenizer import decoder_start_ids, prepared_tokenizer
from src.infer.generate import Generator, generate_rows, text_symbols
from src.infer.file_inputs import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, files_inputs, input_files, is_many
from src.infer.items import Items, content_codes, load_items
from src.infer.retrieval import normalise
from src.metrics.text import text_metrics
from src.modality import MODALITIES

EVAL_INPUTS = {"caption": ("image",), "asr": ("audio",), "caption_ia": ("image", "audio")}  # eval.py --task -> inputs


def references(items: Items, texts: List[str], modalities) -> List[List[str]]:
    """Per item: its own text first (WER/CER compare with it), then the texts of the other items with the same input.
    """
    codes = content_codes(items, modalities)
    by_code = defaultdict(list)
    for i, code in enumerate(codes):
        by_code[code].append(i)
    return [[texts[i]] + [texts[j] for j in by_code[code] if j != i] for i, code in enumerate(codes)]


def evaluate_generation(graphs, data, cfg: Config, task: str, split: str, limit: int = 0, training=None) -> Dict:
    """Decode `split` (its first `limit` usable inputs when limit > 0) from the input set of `task` with the start and
    step cells of `graphs` (a caption checkpoint's or its export's) and score it: each distinct input once per
    language (a COCO image once, against its five captions). `training`: (prepared data, split) whose items the
    nearest-neighbour baseline looks up (None: no baseline). Returns the report: metrics, metrics per language,
    decoding speed and every prediction."""
    modalities = EVAL_INPUTS[task]
    items = load_items(data, cfg.data, split)
    raw = data.read_columns(split, ["id", "text", "lang", "n_audio"])  # as written, not as word pieces
    ids, texts, langs = ([raw[k][i] for i in items.index] for k in ("id", "text", "lang"))
    present = items.present()
    usable = np.flatnonzero(present[:, [MODALITIES.index(m) for m in ("text",) + modalities]].all(1))
    if len(usable) == 0:
        raise DatasetError(f"{data.root}: split '{split}' has no item with text and {'+'.join(modalities)}")
    refs = references(items, texts, modalities)
    usable = distinct_inputs(usable, content_codes(items, modalities), langs)
    usable = usable[:limit] if limit > 0 else usable
    chosen = items.subset(usable)

    specials = data.meta["text"]["special_ids"]
    generator = Generator(None, modalities, cfg.generate, text_symbols(specials, data.meta["text"]["vocab_size"]),
                          cfg.model.max_positions, graphs=graphs.generator_graphs(modalities, cfg.generate))
    chosen_langs = [langs[i] for i in usable]
    starts = decoder_start_ids(data.vocab_path, chosen_langs, specials["[CLS]"])  # decode in the item's language
    started = time.perf_counter()
    pieces = generate_rows(generator, len(chosen), lambda rows: chosen.compose({m: rows for m in modalities}), starts)
    seconds = time.perf_counter() - started
    tokenizer = prepared_tokenizer(data)
    predictions = [tokenizer.decode(p, lang) for p, lang in zip(pieces, chosen_langs)]

    chosen_refs = [refs[i] for i in usable]
    chinese = cfg.generate.chinese
    report = {"inputs": "+".join(modalities), "strategy": cfg.generate.strategy, "items": len(usable),
              "seconds": seconds, "pieces_per_second": sum(len(p) + 1 for p in pieces) / max(seconds, 1e-9),
              "metrics": text_metrics(predictions, chosen_refs, chosen_langs, chinese), "by_lang": {}}
    for lang in sorted(set(chosen_langs)):
        rows = [i for i, item_lang in enumerate(chosen_langs) if item_lang == lang]
        report["by_lang"][lang] = dict(text_metrics([predictions[i] for i in rows], [chosen_refs[i] for i in rows],
                                                    [lang] * len(rows), chinese), items=len(rows))
    cut = _audio_cut(raw, items.index[usable], cfg.data.max_audio_tokens) if "audio" in modalities else 0
    if cut:
        print(f"warning: {cut} of {len(usable)} items have more audio tokens than data.max_audio_tokens="
              f"{cfg.data.max_audio_tokens}; the model heard only their start")
    report["audio_cut"] = cut
    report["unique_share"] = unique_share(predictions)
    if training is not None:
        baseline = nearest_neighbour_captions(*training, cfg, chosen, chosen_langs, modalities)
        report["nearest_neighbour"] = dict(text_metrics(baseline, chosen_refs, chosen_langs, chinese),
                                           unique_share=unique_share(baseline))
    report["predictions"] = [{"id": ids[i], "prediction": p, "references": refs[i]}
                             for i, p in zip(usable, predictions)]
    return report


def distinct_inputs(rows: np.ndarray, codes: np.ndarray, langs: List[str]) -> np.ndarray:
    """The first of `rows` for each distinct (input, language): the item decoded for all that share them."""
    keys = [(int(codes[r]), langs[r]) for r in rows]
    first = {}
    for r, key in zip(rows, keys):
        first.setdefault(key, r)
    return np.array(sorted(first.values()), dtype=np.int64)


def unique_share(predictions: List[str]) -> float:
    """Percent of the items whose text no other item got (a collapsed decoder scores near 0)."""
    counts = defaultdict(int)
    for p in predictions:
        counts[p] += 1
    return 100.0 * sum(counts[p] == 1 for p in predictions) / max(len(predictions), 1)


def pooled_inputs(items: Items, modalities) -> np.ndarray:
    """[N, D] the pretrained input features of `modalities` (EfficientNet regions, Whisper frames, standardised as
    the model reads them), each averaged over its tokens and L2-normalised, side by side."""
    parts = []
    for m in ("image", "audio"):
        if m in modalities:
            mean = items.mean_features(m)
            parts.append(normalise(mean))
    return np.concatenate(parts, axis=1)


def nearest_neighbour_captions(data, train_split: str, cfg: Config, queries: Items, query_langs: List[str],
                               modalities) -> List[str]:
    """The baseline a decoder must beat: each query gets the caption of the training item (of `train_split` of
    `data`, in the query's language) whose pretrained input features are nearest by cosine."""
    train = load_items(data, cfg.data, train_split)
    raw = data.read_columns(train_split, ["text", "lang"])
    texts = [raw["text"][i] for i in train.index]
    langs = np.array([raw["lang"][i] for i in train.index])
    present = train.present()
    usable = present[:, [MODALITIES.index(m) for m in ("text",) + tuple(modalities)]].all(1)
    similarity = pooled_inputs(queries, modalities) @ pooled_inputs(train, modalities).T
    out = []
    for row, lang in zip(similarity, query_langs):
        allowed = usable & (langs == lang)
        if not allowed.any():
            allowed = usable
        out.append(texts[int(np.argmax(np.where(allowed, row, -np.inf)))])
    return out


def _audio_cut(raw: dict, index: np.ndarray, max_tokens: int) -> int:
    return int((np.asarray(raw["n_audio"])[index] > max_tokens).sum())


def generation_table(report: Dict) -> List[str]:
    """The scores overall and per language, then the nearest-neighbour baseline's (when the report has it)."""
    lines = [f"{'inputs':<12}{'lang':<9}{'items':>6}{'BLEU-1':>8}{'BLEU-4':>8}{'CIDEr':>8}{'ROUGE-L':>8}{'WER':>8}"
             f"{'CER':>8}{'unique%':>9}"]
    rows = [("all", report["metrics"], report["items"], report.get("unique_share"))] + \
           [(lang, m, m["items"], None) for lang, m in report["by_lang"].items()]
    if "nearest_neighbour" in report:
        nn = report["nearest_neighbour"]
        rows.append(("NN base", nn, report["items"], nn["unique_share"]))
    for lang, m, n, unique in rows:
        shown = f"{unique:>9.1f}" if unique is not None else f"{'':>9}"
        lines.append(f"{report['inputs']:<12}{lang:<9}{n:>6}{m['BLEU-1']:>8.1f}{m['BLEU-4']:>8.1f}"
                     f"{m['CIDEr']:>8.3f}{m['ROUGE-L']:>8.1f}{m['WER']:>8.1f}{m['CER']:>8.1f}{shown}")
    return lines


def supported_tasks(data, split: str) -> List[str]:
    """The text generation tasks (eval.py --task) whose inputs split `split` of `data` has: an image-text set
    supports caption only, a speech set asr only."""
    present = data.modalities(split)
    return [task for task, inputs in EVAL_INPUTS.items() if all(m in present for m in ("text",) + inputs)]


def evaluate_run(run) -> List[str]:
    """eval.py --task caption / asr / caption_ia."""
    run.report.update(evaluate_generation(run.graphs, run.data(), run.cfg, run.task, run.split, run.args.limit,
                                          run.training_data("nearest-neighbour baseline")))
    return generation_table(run.report)


def describe(args, graphs, cfg: Config) -> List[str]:
    """infer.py on a caption run: the text generated from --image, --audio or both, in --lang (a JSON line per file
    for a folder or list of files)."""
    if args.text is not None or not (args.image or args.audio):
        raise ConfigError("text generation reads --image, --audio or both (and no --text)")
    if is_many(args.image) or is_many(args.audio):
        return describe_many(args, graphs, cfg)
    text = generate_texts(graphs, cfg, [args.image] if args.image else [], [args.audio] if args.audio else [],
                          args.lang)[0]
    if isinstance(text, FeatureError):
        raise text
    return [text]


FILES_AT_ONCE = 256  # files whose features are held at once (a few hundred MB at the demo's shapes)


def describe_many(args, graphs, cfg: Config) -> List[str]:
    """infer.py --image DIR|LIST (or --audio DIR|LIST): a JSON line per file, {"file", "text"}, or {"file", "error"}
    for a file that cannot be read."""
    if args.image and args.audio:
        raise ConfigError("many inputs: give a folder or list of files to --image or to --audio, not both")
    modality = "image" if args.image else "audio"
    files = input_files(args.image or args.audio, IMAGE_EXTENSIONS if modality == "image" else AUDIO_EXTENSIONS)
    texts = generate_texts(graphs, cfg, **{f"{modality}s": files}, lang=args.lang)
    return [json.dumps({"file": f, "error": str(t)} if isinstance(t, FeatureError) else {"file": f, "text": t},
                       ensure_ascii=False) for f, t in zip(files, texts)]


def generate_texts(graphs, cfg: Config, images: Sequence = (), audios: Sequence = (), lang: str = "en",
                   warn=None) -> list:
    """The text generated in `lang` for each row, row i from images[i] and/or audios[i] (files, their bytes or
    decoded arrays: src/infer/file_inputs.py), or the FeatureError of a row whose input cannot be read. The decoder
    runs on generate.batch_size rows at a time (fewer for fewer rows), FILES_AT_ONCE rows' features held at once."""
    modalities = tuple(m for m, given in (("image", images), ("audio", audios)) if len(given))
    count = max(len(images), len(audios))
    if not count:
        return []
    data = graphs.data(cfg)
    text = data.meta["text"]
    decoding = dataclasses.replace(cfg.generate, batch_size=min(cfg.generate.batch_size, count))
    generator = Generator(None, modalities, decoding, text_symbols(text["special_ids"], text["vocab_size"]),
                          cfg.model.max_positions, graphs=graphs.generator_graphs(modalities, cfg.generate))
    start = decoder_start_ids(data.vocab_path, [lang], text["special_ids"]["[CLS]"])[0]
    tokenizer = prepared_tokenizer(data)
    out = []
    for begin in range(0, count, FILES_AT_ONCE):
        chunk = {f"{m}s": list(given[begin:begin + FILES_AT_ONCE]) for m, given in (("image", images),
                                                                                    ("audio", audios)) if len(given)}
        inputs, errors = files_inputs(data, cfg, **chunk, **({"warn": warn} if warn else {}))
        usable = np.array([i for i, e in enumerate(errors) if e is None], np.int64)
        pieces = generate_rows(generator, len(usable), lambda rows: tuple(x[usable[rows]] for x in inputs),
                               np.full(len(usable), start, np.int32)) if len(usable) else []
        texts = dict(zip(usable.tolist(), (tokenizer.decode(p, lang) for p in pieces)))
        out += [texts[i] if i in texts else FeatureError(errors[i]) for i in range(len(errors))]
    return out
