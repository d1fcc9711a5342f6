"""The inference cells of a trained network, by name: one interface whether they come from a checkpoint or from the
graphs `export.py` wrote, so evaluation and inference have one code path.

A task names its cells as its export names its graph files (`embed`, `match_text_image`, `pooled_text_image_audio`,
`start_image`, `step`, `decode`, ...); its `graphs(cfg, ckpt)` builds them (a `GraphSet`). `CheckpointGraphs` builds
them from a checkpoint when first asked; `ExportedGraphs` loads the exported MINDIR files. Both answer
`graphs[name]` (a callable cell), `.config()`, `.checkpoint`, `.decoding` (the settings baked into a decoder's step)
and `.generator_graphs(modalities, cfg)` (what `src.infer.generate.Generator` runs).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn

from src.config import Config, apply_overrides, from_dict, renamed, to_dict
from src.data.lineage import data_or_settings
from src.data.records import open_prepared
from src.infer.bundle import MANIFEST, check_bundle
from src.infer.generate import candidates_per_step
from src.modality import INPUT_COLUMNS

VERIFY_ROWS = 3  # rows an export runs through both the network and the written graph


class ExportError(ValueError):
    """A bundle or graph that cannot serve the requested run; the message names the file."""


@dataclass
class Graph:
    """One inference cell with the names of its inputs and outputs; example(items) gives inputs to trace and check
    it with (the first VERIFY_ROWS items of the evaluation split)."""
    cell: nn.Cell
    inputs: List[str]
    outputs: List[str]
    example: Callable


@dataclass
class GraphSet:
    """A task's cells by name, and for a decoder the settings its step graph bakes in (the bundle's manifest
    records them)."""
    graphs: Dict[str, Graph]
    decoding: Optional[dict] = None


def match_graph(modalities) -> str:
    return "match_" + "_".join(modalities)


def start_graph(modalities) -> str:
    return "start_" + "_".join(modalities)


def pooled_graph(modalities) -> str:
    """The linear probe's features of an input set (MINDIR file names take no '+')."""
    return "pooled_" + "_".join(modalities)


def cache_names(layers: int) -> List[str]:
    """StartCell's flat outputs (StepCell's cache inputs), in order."""
    names = ["memory_bias"]
    for kind in ("memory", "self"):
        names += [f"{kind}_{kv}_{i}" for i in range(layers) for kv in ("keys", "values")]
    return names


def decoding_graphs(make_generator, input_sets: Sequence[tuple]) -> Dict[str, Graph]:
    """`start_<inputs>` for each input set and the shared `step`, of the Generator make_generator(modalities)."""
    graphs = {}
    for modalities in input_sets:
        gen = make_generator(modalities)
        graphs[start_graph(modalities)] = Graph(gen.start, INPUT_COLUMNS + ["row_index"], cache_names(gen.layers),
                                                lambda items, g=gen: start_inputs(g, items))

    def step_example(items, g=gen):
        inputs = start_inputs(g, items)
        state = [o.asnumpy() for o in g.start(*(ms.Tensor(x) for x in inputs))]
        rows = len(inputs[-1])
        return (np.full((rows, 1), g.start_id, np.int32), np.array(0, np.int32), np.arange(rows, dtype=np.int32),
                *state)

    names = cache_names(gen.layers)
    graphs["step"] = Graph(gen.step_cell, ["ids", "position", "parents"] + names,
                           ["top_log_probs", "top_ids"] + names[1 + 2 * gen.layers:], step_example)
    return graphs


def start_inputs(gen, items) -> tuple:
    """The model inputs of the first VERIFY_ROWS items, and each beam's row."""
    inputs = items.compose({"text": np.arange(VERIFY_ROWS)})
    return inputs + (np.repeat(np.arange(VERIFY_ROWS), gen.width).astype(np.int32),)


class Graphs:
    """What both providers share: the decoder graphs for `Generator`, checked against the settings baked in."""
    decoding: Optional[dict]
    where: str
    trained_on: str = ""  # the prepared data the network was trained on (its run's data.path)

    def __getitem__(self, name: str):
        raise NotImplementedError

    def generator_graphs(self, modalities, cfg) -> tuple:
        """(start, step, decoder layers) for Generator; the decoding settings baked into `step` must be cfg's."""
        baked = self.decoding
        k = candidates_per_step(cfg, baked["symbols"])
        differ = [key for key in ("strategy", "beam_size", "max_len", "top_k") if baked[key] != getattr(cfg, key)]
        if differ or k != baked["candidates_per_step"]:
            section = baked.get("section", "generate")
            shown = ", ".join(f"{section}.{key} {getattr(cfg, key)} (exported: {baked[key]})" for key in differ)
            raise ExportError(f"{self.where}: the step graph was exported for other decoding settings: {shown}; "
                              "export again with them (export.py --set ...)")
        return self[start_graph(modalities)], self["step"], baked["decoder_layers"]

    def data(self, cfg: Config):
        return open_prepared(cfg.data.path)


class CheckpointGraphs(Graphs):
    """A checkpoint's cells, built by build(cfg, ckpt) -> GraphSet on first use."""

    def __init__(self, cfg: Config, ckpt: Path, build: Callable[[Config, Path], GraphSet]):
        self.cfg, self.checkpoint, self.build = cfg, Path(ckpt), build
        self.where = str(ckpt)
        self.out_dir = self.checkpoint.parent
        self.source = {"checkpoint": str(ckpt)}
        self._set: Optional[GraphSet] = None

    @property
    def graph_set(self) -> GraphSet:
        if self._set is None:
            self._set = self.build(self.cfg, self.checkpoint)
        return self._set

    @property
    def decoding(self) -> Optional[dict]:
        return self.graph_set.decoding

    def __getitem__(self, name: str) -> nn.Cell:
        graphs = self.graph_set.graphs
        if name not in graphs:
            raise ExportError(f"{self.where}: its network has no cell '{name}' (has: {', '.join(graphs)})")
        return graphs[name].cell


class ExportedGraphs(Graphs):
    """The graphs of a bundle (src/infer/bundle.py), checked when opened and loaded on first use: graphs["embed"] is
    an nn.GraphCell. The config is the exported run's, its data.path the bundle's data settings unless overridden
    (eval.py --data)."""

    def __init__(self, bundle: str, overrides=()):
        folder = Path(bundle)
        if folder.name == MANIFEST:
            folder = folder.parent
        if folder.suffix == ".json" and folder.is_file():
            raise ExportError(f"{bundle}: an export of an earlier version (PREFIX.json): export again, export.py "
                              "--out FOLDER writes a bundle")
        if not folder.is_dir():
            raise FileNotFoundError(f"bundle not found: {bundle} (export.py --out FOLDER writes one)")
        self.meta = check_bundle(folder)
        self.folder, self.path = folder, folder / MANIFEST
        self.where, self.out_dir = str(self.path), folder.parent
        self.source = {"mindir": str(folder)}
        if self.meta.get("format") != "MINDIR":
            raise ExportError(f"{self.path}: {self.meta.get('format')} graphs run on Ascend through its own runtime; "
                              "eval.py and infer.py run MINDIR")
        self.cells: Dict[str, nn.GraphCell] = {}
        self.cfg = self.config(overrides)
        self.trained_on = self.meta["features"]["trained_on"]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def checkpoint(self) -> str:
        return self.meta["checkpoint"]

    @property
    def decoding(self) -> Optional[dict]:
        return self.meta.get("generate")

    def config(self, overrides=()) -> Config:
        """The exported run's config, with `key=value` overrides; its data.path the bundle's data settings when the
        training data is not on this machine."""
        where = str(self.path)
        cfg = from_dict(Config, renamed(self.meta["config"], where), where=where)
        path = data_or_settings(cfg.data.path, self.folder / self.meta["features"]["data_settings"])
        return apply_overrides(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=path)),
                               list(overrides))

    def __getitem__(self, name: str) -> nn.GraphCell:
        if name not in self.meta["graphs"]:
            raise ExportError(f"{self.path}: no graph '{name}' (has: {', '.join(self.meta['graphs'])})")
        if name not in self.cells:
            file = self.folder / self.meta["graphs"][name]["file"]
            if not file.is_file():
                raise FileNotFoundError(f"{file} (listed in {self.path}) not found")
            self.cells[name] = nn.GraphCell(ms.load(str(file)))
        return self.cells[name]

    def require(self, task: str, needed_by: str) -> None:
        if self.task != task:
            raise ExportError(f"{self.path}: exported for task '{self.task}', but {needed_by} needs a '{task}' "
                              "export")


def baked_decoding(gen_cfg, symbols: int, layers: int, section: str = "generate", **extra) -> dict:
    """The decoding settings a step graph is built with (its top-k width is fixed in the graph)."""
    return {**to_dict(gen_cfg), "candidates_per_step": candidates_per_step(gen_cfg, symbols), "symbols": symbols,
            "decoder_layers": layers, "section": section, **extra}
