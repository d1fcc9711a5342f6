"""Export a trained network as a bundle of the graphs its evaluation runs (`src/infer/graphs.py` loads them back).

`export.py --task T --ckpt RUN --out BUNDLE` writes one folder (src/infer/bundle.py): a graph file per cell of the
task's `GraphSet` (each task builds its own), BUNDLE/<graph>.mindir (or .air), every input with a dynamic batch
dimension; the data settings the inputs are made with; and BUNDLE/bundle.json, the manifest: the graphs with their
inputs and outputs (name, shape with -1 for dynamic, dtype), the run's config, the tokenizer and the features the
inputs are made of. The graphs are exactly the cells that `eval.py` and `infer.py` compile, so `eval.py --mindir
BUNDLE` runs the same evaluation on the exported graphs. Nothing of the training data is read: each graph is checked
against the network on made-up rows of the data's shapes.

- pretrain: `pooled_<modalities>` (pooled_text_image_audio) for each linear-probe input set (eval.probe_inputs): the
  mean cross-modal encoder state of each modality in the set, side by side [B, hidden x modalities];
- retrieval: `embed` (unit-length text, image and audio embeddings, each [B, embed_dim]) and `match_<modalities>` for
  every set of two or three modalities (the cross-encoder's "all match" logit [B]);
- caption: `start_<inputs>` for image, audio and image+audio (encoder output -> the decoder's caches) and `step` (one
  decoding step with cache inputs -> top-k candidates and the updated caches), with the decoding settings baked in:
  the manifest records them and a run with other settings is refused;
- t2i: the vision decoder's `start_text`, `start_text_audio` and `step` (top-k width of `t2i.top_k` baked in; the
  temperature, top_p and seed apply outside the graph) and `decode`, the frozen dVAE decoder: codes [B, grid^2] ->
  images [B, S, S, 3] in [0, 1].
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import List, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn

from src.config import Config, ConfigError, to_dict
from src.data.lineage import save_settings
from src.data.records import PreparedData
from src.infer.bundle import SETTINGS, write_bundle
from src.infer.graphs import VERIFY_ROWS, Graph, GraphSet
from src.infer.items import made_up_items

FORMATS = {"MINDIR": ".mindir", "AIR": ".air"}
SAFE_PATH = re.compile(r"^[0-9a-zA-Z@_\-.:/\\]+$")  # the file names ms.export accepts


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


def export_bundle(cfg: Config, ckpt: Path, task: str, graph_set: GraphSet, data: PreparedData, out: str,
                  file_format: str = "MINDIR", log=print) -> Path:
    """Write the bundle folder `out` (src/infer/bundle.py): the graphs of `graph_set` (task `task`'s, from checkpoint
    `ckpt`), each checked against the network on made-up rows shaped as `data`'s, and the data settings of `data`
    (the run's data_settings, or the prepared set it was trained on). Returns the manifest's path."""
    if file_format not in FORMATS:
        raise ConfigError(f"export: format must be MINDIR or AIR, got '{file_format}'")
    items = made_up_items(data, cfg.data, VERIFY_ROWS, cfg.train.seed)

    def write(folder: Path) -> dict:
        graphs = {name: write_graph(folder, name, graph, graph.example(items), file_format, log)
                  for name, graph in graph_set.graphs.items()}
        save_settings(data, folder)
        manifest = {"task": task, "format": file_format, "checkpoint": str(ckpt), "graphs": graphs,
                    "tokenizer": {**{k: v for k, v in data.meta["text"].items() if k != "vocab_file"},
                                  "vocab": f"{SETTINGS}/vocab.txt"},
                    "features": {"data_settings": SETTINGS, "trained_on": cfg.data.path,
                                 "note": "inputs are padded rows as src/data/padding.py builds them; image regions "
                                         "and audio tokens come from the extractors of src/data/extractors.py with "
                                         "the data settings' settings, rounded to float16, then standardised: "
                                         "(x - mean) / std per channel (infer.py --mindir does this for a file)"},
                    "config": to_dict(cfg)}
        if graph_set.decoding is not None:
            manifest["generate"] = graph_set.decoding
        return manifest

    return write_bundle(Path(out), write)


def write_graph(folder: Path, name: str, graph: Graph, inputs, file_format: str, log) -> dict:
    """Export one cell into the bundle's (temporary) folder and describe it; a MINDIR graph is loaded back and run
    beside the cell on `inputs` (the largest difference is recorded)."""
    file = folder / f"{name}{FORMATS[file_format]}"
    specs = [_spec(x, dynamic_axes(name, n)) for x, n in zip(inputs, graph.inputs)]
    export_file(graph.cell, specs, folder, name, file_format)
    expected = _outputs(graph.cell(*(ms.Tensor(x) for x in inputs)))
    entry = {"file": file.name, "inputs": _describe_inputs(graph.inputs, specs),
             "outputs": _describe_outputs(graph.outputs, expected)}
    checked = ""
    if file_format == "MINDIR":  # AIR graphs run on Ascend's own runtime only
        got = _outputs(nn.GraphCell(ms.load(str(file)))(*(ms.Tensor(x) for x in inputs)))
        entry["verified_max_abs_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
        checked = f", max |graph - network| {entry['verified_max_abs_diff']:.2e}"
    log(f"{file.name}: {len(graph.inputs)} inputs -> {len(graph.outputs)} outputs{checked}")
    return entry


def export_file(cell, specs, folder: Path, name: str, file_format: str) -> None:
    """ms.export of `cell` as folder/<name>.<format>. MindSpore refuses a file name with characters outside
    SAFE_PATH (a space, say), so a folder with one gets the file written in a temporary folder and moved in."""
    if SAFE_PATH.match(str(folder.resolve())):
        ms.export(cell, *specs, file_name=str(folder / name), file_format=file_format)
        return
    with tempfile.TemporaryDirectory(prefix="opt-export-") as scratch:
        ms.export(cell, *specs, file_name=str(Path(scratch) / name), file_format=file_format)
        for written in Path(scratch).iterdir():  # the graph (and a folder of weights, for a large one)
            shutil.move(str(written), str(folder / written.name))


def _outputs(out) -> List[np.ndarray]:
    return [o.asnumpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
