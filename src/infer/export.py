"""Export a trained network as the graphs its evaluation runs (`src/infer/graphs.py` loads them back).

`export.py --task T --ckpt RUN --out PREFIX` writes one graph file per cell of the task's `GraphSet` (each task builds
its own), PREFIX.<graph>.mindir (or .air), every input with a dynamic batch dimension, and PREFIX.json, the sidecar:
the graphs with their inputs and outputs (name, shape with -1 for dynamic, dtype), the run's config, the tokenizer (a
copy of the vocabulary) and the features the inputs are made of. The graphs are exactly the cells that `eval.py` and
`infer.py` compile, so `eval.py --mindir PREFIX.json` runs the same evaluation on the exported graphs.

- pretrain: `pooled_<modalities>` (pooled_text_image_audio) for each linear-probe input set (eval.probe_inputs): the
  mean cross-modal encoder state of each modality in the set, side by side [B, hidden x modalities];
- retrieval: `embed` (unit-length text, image and audio embeddings, each [B, embed_dim]) and `match_<modalities>` for
  every set of two or three modalities (the cross-encoder's "all match" logit [B]);
- caption: `start_<inputs>` for image, audio and image+audio (encoder output -> the decoder's caches) and `step` (one
  decoding step with cache inputs -> top-k candidates and the updated caches), with the decoding settings baked in:
  the sidecar records them and a run with other settings is refused;
- t2i: the vision decoder's `start_text`, `start_text_audio` and `step` (top-k width of `t2i.top_k` baked in; the
  temperature, top_p and seed apply outside the graph) and `decode`, the frozen dVAE decoder: codes [B, grid^2] ->
  images [B, S, S, 3] in [0, 1].
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn

from src.config import Config, ConfigError, to_dict
from src.data.records import open_prepared, write_json_atomic
from src.infer.graphs import VERIFY_ROWS, Graph, GraphSet
from src.infer.items import load_items

FORMATS = {"MINDIR": ".mindir", "AIR": ".air"}


def _spec(array: np.ndarray, dynamic=(0,)) -> ms.Tensor:
    shape = [None if i in dynamic else d for i, d in enumerate(array.shape)]
    return ms.Tensor(shape=shape, dtype=ms.int32 if array.dtype == np.int32 else ms.float32)


def _describe_inputs(names, specs) -> List[dict]:
    return [{"name": n, "shape": [-1 if d is None or d < 0 else int(d) for d in s.shape],
             "dtype": "int32" if s.dtype == ms.int32 else "float32"} for n, s in zip(names, specs)]


def _describe_outputs(names, arrays) -> List[dict]:
    return [{"name": n, "shape": [-1] + list(a.shape[1:]), "dtype": str(a.dtype)} for n, a in zip(names, arrays)]


def dynamic_axes(graph: str, input_name: str) -> Tuple[int, ...]:
    """The batch axis, and the memory length of the step's memory inputs (it differs between input sets)."""
    if input_name == "position":
        return ()
    if graph == "step" and input_name == "memory_bias":
        return (0, 3)
    if graph == "step" and input_name.startswith("memory_"):
        return (0, 2)
    return (0,)


def export_graphs(cfg: Config, ckpt: Path, task: str, graph_set: GraphSet, prefix: str, file_format: str = "MINDIR",
                  log=print) -> Path:
    """Write the graphs of `graph_set` (task `task`'s, from checkpoint `ckpt`), the vocabulary and the sidecar;
    returns the sidecar's path."""
    if file_format not in FORMATS:
        raise ConfigError(f"export: format must be MINDIR or AIR, got '{file_format}'")
    data = open_prepared(cfg.data.path)
    # the rows each graph is checked on: the evaluation split's, or the training split's in a set prepared without one
    split = cfg.data.eval_split if cfg.data.eval_split in data.splits else cfg.data.train_split
    items = load_items(data, cfg.data, split, limit=VERIFY_ROWS)
    if len(items) < VERIFY_ROWS:
        raise ConfigError(f"export: {cfg.data.path} [{split}] has {len(items)} items; the export checks its graphs "
                          f"on {VERIFY_ROWS}")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    graphs = {name: write_graph(prefix, name, graph, graph.example(items), file_format, log)
              for name, graph in graph_set.graphs.items()}
    vocab = prefix.parent / f"{prefix.name}.vocab.txt"
    partial = vocab.with_name(f".partial-{vocab.name}")
    shutil.copyfile(data.vocab_path, partial)
    partial.replace(vocab)
    sidecar = {"task": task, "format": file_format, "checkpoint": str(ckpt), "graphs": graphs,
               "tokenizer": {**{k: v for k, v in data.meta["text"].items() if k != "vocab_file"}, "vocab": vocab.name},
               "features": {"prepared_data": str(Path(cfg.data.path).resolve()),
                            "extractors": {m: data.meta[m].get("extractor") for m in ("image", "audio")},
                            "standardize": {m: data.meta[m].get("standardize") for m in ("image", "audio")},
                            "note": "inputs are padded rows as src/data/pipeline.py builds them; image regions and "
                                    "audio tokens come from the extractors of src/data/extractors.py with the "
                                    "prepared data's settings, rounded to float16, then standardised: "
                                    "(x - mean) / std per channel (infer.py --mindir does this for a file)"}}
    if graph_set.decoding is not None:
        sidecar["generate"] = graph_set.decoding
    sidecar["config"] = to_dict(cfg)
    path = prefix.parent / f"{prefix.name}.json"
    write_json_atomic(path, sidecar)
    return path


def write_graph(prefix: Path, name: str, graph: Graph, inputs, file_format: str, log) -> dict:
    """Export one cell (under a temporary name, then renamed) and describe it; a MINDIR graph is loaded back and
    run beside the cell on `inputs` (the largest difference is recorded)."""
    file = prefix.parent / f"{prefix.name}.{name}{FORMATS[file_format]}"
    specs = [_spec(x, dynamic_axes(name, n)) for x, n in zip(inputs, graph.inputs)]
    partial = file.with_name(f".partial-{file.stem}")
    ms.export(graph.cell, *specs, file_name=str(partial), file_format=file_format)
    partial.with_name(partial.name + FORMATS[file_format]).replace(file)
    expected = _outputs(graph.cell(*(ms.Tensor(x) for x in inputs)))
    entry = {"file": file.name, "inputs": _describe_inputs(graph.inputs, specs),
             "outputs": _describe_outputs(graph.outputs, expected)}
    checked = ""
    if file_format == "MINDIR":  # AIR graphs run on Ascend's own runtime only
        got = _outputs(nn.GraphCell(ms.load(str(file)))(*(ms.Tensor(x) for x in inputs)))
        entry["verified_max_abs_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
        checked = f", max |graph - network| {entry['verified_max_abs_diff']:.2e}"
    log(f"{file}: {len(graph.inputs)} inputs -> {len(graph.outputs)} outputs{checked}")
    return entry


def _outputs(out) -> List[np.ndarray]:
    return [o.asnumpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
