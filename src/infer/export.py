"""Export a trained network as the graphs its evaluation runs, and load them back in place of the Python network.

`export.py --task T --ckpt RUN --out PREFIX` writes one graph file per inference cell, PREFIX.<graph>.mindir (or .air),
every input with a dynamic batch dimension, and PREFIX.json, the sidecar: the graphs with their inputs and outputs
(name, shape with -1 for dynamic, dtype), the run's config, the tokenizer (a copy of the vocabulary) and the features
the inputs are made of. The graphs are exactly the cells that `eval.py` and `infer.py` compile, so
`eval.py --mindir PREFIX.json` runs the same evaluation on the exported graphs.

- pretrain: `pooled_<INPUTS>` for each linear-probe input set (eval.probe_inputs): the mean of the cross-modal
  encoder output [B, hidden];
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

import itertools
import json
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn

from src.config import Config, ConfigError, apply_overrides, from_dict, to_dict
from src.data.pipeline import INPUT_COLUMNS
from src.data.records import write_json_atomic
from src.infer.items import Items, load_items
from src.model.opt import MODALITIES

TASKS = ("pretrain", "retrieval", "caption", "t2i")
FORMATS = {"MINDIR": ".mindir", "AIR": ".air"}
VERIFY_ROWS = 3  # rows the export runs through both the network and the written graph


class ExportError(ValueError):
    """A sidecar or graph that cannot serve the requested run; the message names the file."""


def _spec(array: np.ndarray, dynamic=(0,)) -> ms.Tensor:
    shape = [None if i in dynamic else d for i, d in enumerate(array.shape)]
    return ms.Tensor(shape=shape, dtype=ms.int32 if array.dtype == np.int32 else ms.float32)


def _describe_inputs(names, specs) -> List[dict]:
    return [{"name": n, "shape": [-1 if d is None or d < 0 else int(d) for d in s.shape],
             "dtype": "int32" if s.dtype == ms.int32 else "float32"} for n, s in zip(names, specs)]


def _describe_outputs(names, arrays) -> List[dict]:
    return [{"name": n, "shape": [-1] + list(a.shape[1:]), "dtype": str(a.dtype)} for n, a in zip(names, arrays)]


def probe_graphs(cfg: Config, ckpt, items: Items):
    """name -> (cell, example inputs, input names, output names) for the pre-training run's features."""
    from src.tasks.classify import PooledStates, parse_inputs
    from src.tasks.retrieval import load_trained
    model, _ = load_trained(cfg, ckpt, ("net.",))
    inputs = items.compose({"text": np.arange(VERIFY_ROWS)})
    return {f"pooled_{name}": (PooledStates(model.net, parse_inputs(name)), inputs, INPUT_COLUMNS, ["features"])
            for name in cfg.eval.probe_inputs}


def retrieval_graphs(cfg: Config, ckpt, items: Items):
    from src.tasks.retrieval import load_trained
    from src.tasks.retrieval_eval import MatchScore, PooledEmbeddings
    model, _ = load_trained(cfg, ckpt)
    inputs = items.compose({"text": np.arange(VERIFY_ROWS)})
    graphs = {"embed": (PooledEmbeddings(model), inputs, INPUT_COLUMNS, [f"{m}_embedding" for m in MODALITIES])}
    for n in (2, 3):
        for shown in itertools.combinations(MODALITIES, n):
            graphs[match_graph(shown)] = (MatchScore(model, shown), inputs, INPUT_COLUMNS, ["match_logit"])
    return graphs


def match_graph(modalities) -> str:
    return "match_" + "_".join(modalities)


def start_graph(modalities) -> str:
    return "start_" + "_".join(modalities)


def caption_graphs(cfg: Config, ckpt, items: Items):
    from src.infer.generate import Generator, text_symbols
    from src.tasks.caption import EVAL_INPUTS, load_trained
    model, data = load_trained(cfg, ckpt)
    symbols = text_symbols(data.meta["text"]["special_ids"], data.meta["text"]["vocab_size"])
    return decoding_graphs(lambda m: Generator(model, m, cfg.generate, symbols, cfg.model.max_positions),
                           EVAL_INPUTS.values(), items)


def t2i_graphs(cfg: Config, ckpt, items: Items):
    """The vision decoder's start and step graphs, and `decode`: codes [B, grid^2] -> images [B, S, S, 3]."""
    from src.tasks.text_to_image import INPUT_SETS, CodesToImages, image_generator, load_trained
    model, dvae, _ = load_trained(cfg, ckpt)
    graphs = decoding_graphs(lambda m: image_generator(model, dvae, cfg, m).generator, INPUT_SETS.values(), items)
    codes = np.arange(VERIFY_ROWS * dvae.grid ** 2, dtype=np.int32).reshape(VERIFY_ROWS, -1) % cfg.dvae.codebook_size
    graphs["decode"] = (CodesToImages(dvae), (codes,), ["codes"], ["images"])
    return graphs


def decoding_graphs(make_generator, input_sets, items: Items):
    """`start_<inputs>` for each input set and the shared `step`, of the Generator make_generator(modalities)."""
    inputs = items.compose({"text": np.arange(VERIFY_ROWS)})
    graphs = {}
    for modalities in input_sets:
        gen = make_generator(modalities)
        row_index = np.repeat(np.arange(VERIFY_ROWS), gen.width).astype(np.int32)
        graphs[start_graph(modalities)] = (gen.start, inputs + (row_index,), INPUT_COLUMNS + ["row_index"],
                                           cache_names(gen.layers))
    state = [o.asnumpy() for o in gen.start(*(ms.Tensor(x) for x in inputs + (row_index,)))]
    rows = len(row_index)
    step_inputs = (np.full((rows, 1), gen.start_id, np.int32), np.array(0, np.int32),
                   np.arange(rows, dtype=np.int32), *state)
    names = cache_names(gen.layers)
    graphs["step"] = (gen.step_cell, step_inputs, ["ids", "position", "parents"] + names,
                      ["top_log_probs", "top_ids"] + names[1 + 2 * gen.layers:])
    return graphs


def cache_names(layers: int) -> List[str]:
    """StartCell's flat outputs (StepCell's cache inputs), in order."""
    names = ["memory_bias"]
    for kind in ("memory", "self"):
        names += [f"{kind}_{kv}_{i}" for i in range(layers) for kv in ("keys", "values")]
    return names


def dynamic_axes(graph: str, input_name: str) -> Tuple[int, ...]:
    """The batch axis, and the memory length of the step's memory inputs (it differs between input sets)."""
    if input_name == "position":
        return ()
    if graph == "step" and input_name == "memory_bias":
        return (0, 3)
    if graph == "step" and input_name.startswith("memory_"):
        return (0, 2)
    return (0,)


BUILDERS = {"pretrain": probe_graphs, "retrieval": retrieval_graphs, "caption": caption_graphs, "t2i": t2i_graphs}


def export_task(cfg: Config, ckpt: Path, task: str, prefix: str, file_format: str = "MINDIR", log=print) -> Path:
    """Write the task's graphs, the vocabulary and the sidecar; returns the sidecar's path."""
    if task not in TASKS:
        raise ConfigError(f"export: unknown task '{task}' (known: {', '.join(TASKS)})")
    if file_format not in FORMATS:
        raise ConfigError(f"export: format must be MINDIR or AIR, got '{file_format}'")
    from src.data.records import open_prepared
    data = open_prepared(cfg.data.path)
    items = load_items(data, cfg.data, cfg.data.eval_split, limit=VERIFY_ROWS)
    if len(items) < VERIFY_ROWS:
        raise ConfigError(f"export: {cfg.data.path} [{cfg.data.eval_split}] has {len(items)} items; the export "
                          f"checks its graphs on {VERIFY_ROWS}")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    graphs = {name: write_graph(prefix, name, *built, file_format, log)
              for name, built in BUILDERS[task](cfg, ckpt, items).items()}
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
    if task in ("caption", "t2i"):
        sidecar["generate"] = baked_decoding(cfg, task, data, graphs)
    sidecar["config"] = to_dict(cfg)
    path = prefix.parent / f"{prefix.name}.json"
    write_json_atomic(path, sidecar)
    return path


def baked_decoding(cfg: Config, task: str, data, graphs: dict) -> dict:
    """The decoding settings a step graph was exported with (its top-k width is fixed in the graph)."""
    from src.infer.generate import candidates_per_step
    if task == "caption":
        gen_cfg, symbols, layers, extra = cfg.generate, data.meta["text"]["vocab_size"], cfg.model.decoder_layers, {}
    else:
        from src.tasks.text_to_image import sampling_config
        codes = graphs["decode"]["inputs"][0]["shape"][1]
        gen_cfg, symbols, layers = sampling_config(cfg, codes), cfg.dvae.codebook_size, cfg.model.vision_decoder_layers
        extra = {"codes_per_image": codes, "dvae_checkpoint": cfg.dvae.checkpoint}
    return {**to_dict(gen_cfg), "candidates_per_step": candidates_per_step(gen_cfg, symbols), "symbols": symbols,
            "decoder_layers": layers, **extra}


def write_graph(prefix: Path, name: str, cell, inputs, in_names, out_names, file_format: str, log) -> dict:
    """Export one cell (under a temporary name, then renamed) and describe it; a MINDIR graph is loaded back and
    run beside the cell on `inputs` (the largest difference is recorded)."""
    file = prefix.parent / f"{prefix.name}.{name}{FORMATS[file_format]}"
    specs = [_spec(x, dynamic_axes(name, n)) for x, n in zip(inputs, in_names)]
    partial = file.with_name(f".partial-{file.stem}")
    ms.export(cell, *specs, file_name=str(partial), file_format=file_format)
    partial.with_name(partial.name + FORMATS[file_format]).replace(file)
    expected = _outputs(cell(*(ms.Tensor(x) for x in inputs)))
    entry = {"file": file.name, "inputs": _describe_inputs(in_names, specs),
             "outputs": _describe_outputs(out_names, expected)}
    checked = ""
    if file_format == "MINDIR":  # AIR graphs run on Ascend's own runtime only
        got = _outputs(nn.GraphCell(ms.load(str(file)))(*(ms.Tensor(x) for x in inputs)))
        entry["verified_max_abs_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
        checked = f", max |graph - network| {entry['verified_max_abs_diff']:.2e}"
    log(f"{file}: {len(in_names)} inputs -> {len(out_names)} outputs{checked}")
    return entry


def _outputs(out) -> List[np.ndarray]:
    return [o.asnumpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


class ExportedGraphs:
    """The graphs of a sidecar, loaded on first use: graphs["embed"] is an nn.GraphCell."""

    def __init__(self, sidecar_path: str):
        path = Path(sidecar_path)
        if path.is_file() and path.suffix != ".json":
            path = path.with_suffix(".json")
        if not path.is_file():
            raise FileNotFoundError(f"export sidecar not found: {sidecar_path} (export.py writes PREFIX.json)")
        self.path = path
        try:
            self.meta = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ExportError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        if self.meta.get("format") != "MINDIR":
            raise ExportError(f"{path}: {self.meta.get('format')} graphs run on Ascend through its own runtime; "
                              "eval.py and infer.py run MINDIR")
        self.cells: Dict[str, nn.GraphCell] = {}

    @property
    def task(self) -> str:
        return self.meta["task"]

    def config(self, overrides=()) -> Config:
        """The exported run's config, with `key=value` overrides."""
        return apply_overrides(from_dict(Config, self.meta["config"], where=str(self.path)), list(overrides))

    def __getitem__(self, name: str) -> nn.GraphCell:
        if name not in self.meta["graphs"]:
            raise ExportError(f"{self.path}: no graph '{name}' (has: {', '.join(self.meta['graphs'])})")
        if name not in self.cells:
            file = self.path.parent / self.meta["graphs"][name]["file"]
            if not file.is_file():
                raise FileNotFoundError(f"{file} (listed in {self.path}) not found")
            self.cells[name] = nn.GraphCell(ms.load(str(file)))
        return self.cells[name]

    def require(self, task: str, needed_by: str) -> None:
        if self.task != task:
            raise ExportError(f"{self.path}: exported for task '{self.task}', but {needed_by} needs a '{task}' "
                              "export")

    def generator_graphs(self, modalities, cfg) -> tuple:
        """(start, step, decoder layers) for Generator; the decoding settings baked into `step` must be cfg's."""
        baked = self.meta["generate"]
        from src.infer.generate import candidates_per_step
        k = candidates_per_step(cfg, baked["symbols"])
        differ = [key for key in ("strategy", "beam_size", "max_len", "top_k") if baked[key] != getattr(cfg, key)]
        if differ or k != baked["candidates_per_step"]:
            section = "t2i" if self.task == "t2i" else "generate"
            shown = ", ".join(f"{section}.{key} {getattr(cfg, key)} (exported: {baked[key]})" for key in differ)
            raise ExportError(f"{self.path}: the step graph was exported for other decoding settings: {shown}; "
                              "export again with them (export.py --set ...)")
        return self[start_graph(modalities)], self["step"], baked["decoder_layers"]

    def image_generator(self, modalities, cfg: Config):
        """Text-to-image on the exported start, step and decode graphs, with cfg's t2i sampling settings."""
        from src.infer.generate import Generator
        from src.tasks.text_to_image import ImageGenerator, image_symbols, sampling_config
        gen_cfg = sampling_config(cfg, self.meta["generate"]["codes_per_image"])
        graphs = self.generator_graphs(modalities, gen_cfg)
        generator = Generator(None, modalities, gen_cfg, image_symbols(cfg.dvae.codebook_size),
                              cfg.model.max_positions, graphs=graphs)
        return ImageGenerator(generator, self["decode"])
