"""Tasks as data: each module under src/tasks/ registers what it offers, and the entry points (train.py, eval.py,
export.py, infer.py) list and run what is registered. A new task is a new module here that calls `register`, a config
and its tests; no entry point changes.

A task may offer any of:
- training: its module has LOSS_NAMES and build(cfg, num_shards, shard_id) -> (loss cell, make_dataset, batches per
  epoch), optionally warm_start(cfg, loss_net) and after_checkpoint(cfg, loss_net) (train.py);
- graphs(cfg, ckpt) -> GraphSet: its inference cells by name (src/infer/graphs.py), which export.py writes and
  which evaluation and inference run from a checkpoint or from those exported files alike;
- evaluate(run: EvalRun) -> the printed table, filling run.report (eval.py --task NAME);
- infer(args, graphs, cfg) -> printed lines: one input file or text (infer.py).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from src.config import Config, ConfigError


@dataclass(frozen=True)
class Task:
    name: str
    module: str                               # where it registered (training reads build / LOSS_NAMES from it)
    trains: bool = False
    graphs: Optional[Callable] = None         # (cfg, ckpt) -> GraphSet
    exportable: bool = True                   # export.py writes its graphs
    evaluate: Optional[Callable] = None       # (EvalRun) -> table lines
    graphs_of: Optional[str] = None           # the task whose graphs evaluate / infer run (default: its own)
    infer: Optional[Callable] = None          # (args, graphs, cfg) -> lines to print
    infer_from: tuple = ()                    # the tasks of the runs / exports infer.py uses it for by default
    help: str = ""

    @property
    def graph_source(self) -> str:
        return self.graphs_of or self.name


@dataclass
class EvalRun:
    """What an evaluation reads and fills: the entry point's arguments, the config, the split, the network's cells
    (`graphs`: a CheckpointGraphs or an ExportedGraphs) and the report it adds its numbers to."""
    task: str
    args: object
    cfg: Config
    split: str
    graphs: object
    report: dict = field(default_factory=dict)
    log: Callable = print

    @property
    def out_dir(self) -> Path:
        return self.graphs.out_dir

    def data(self):
        return self.graphs.data(self.cfg)

    def training_data(self, purpose: str):
        """(prepared data, split) of the training items that evaluation fits or looks up (`purpose`: a baseline, the
        probe), or None when none is on disk. They come from the run, not from the evaluated set: the training split
        of the data the run was trained on (its recorded data.path), else of the set the evaluated one was prepared
        --like; --train-split names a split of the evaluated set instead."""
        from src.data.records import DatasetError, open_prepared
        split = getattr(self.args, "train_split", None)
        if split:
            return self.data(), split
        split = self.cfg.data.train_split
        evaluated = self.data()
        for path in (self.graphs.trained_on, evaluated.meta.get("like")):
            try:
                data = open_prepared(path) if path else None
            except DatasetError:
                continue
            if data is not None and split in data.splits:
                return data, split
        self.log(f"{purpose}: skipped (the training split '{split}' of the run's data "
                 f"{self.graphs.trained_on or '(not recorded)'} is not on disk)")
        return None


_TASKS: Dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in _TASKS and _TASKS[task.name].module != task.module:
        raise ValueError(f"task '{task.name}' registered twice: {_TASKS[task.name].module} and {task.module}")
    _TASKS[task.name] = task
    return task


def registered() -> Dict[str, Task]:
    """Every task: importing each module of src/tasks/ registers its tasks."""
    import src.tasks as package
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(sorted(_TASKS.items()))


def names(role: str) -> List[str]:
    """The registered tasks that offer `role`: train, evaluate, export or infer."""
    has = {"train": lambda t: t.trains, "evaluate": lambda t: t.evaluate is not None,
           "export": lambda t: t.graphs is not None and t.exportable, "infer": lambda t: t.infer is not None}[role]
    return [name for name, task in registered().items() if has(task)]


def get(name: str, role: str, where: str = "task") -> Task:
    known = names(role)
    if name not in known:
        raise ConfigError(f"{where}: no task '{name}' can {role} (those that can: {', '.join(known)})")
    return _TASKS[name]


def training_module(name: str, where: str = "task"):
    """The module of a trainable task (build, LOSS_NAMES, and optionally warm_start, after_checkpoint)."""
    return importlib.import_module(get(name, "train", where).module)


def open_graphs(task: Task, ckpt: Optional[str] = None, mindir: Optional[str] = None, config: Optional[str] = None,
                overrides=(), needed_by: str = "") -> tuple:
    """(config, graphs) for running `task`: the cells task.graph_source builds from checkpoint `ckpt` (a file or a
    run directory; its config is the run's config.yaml unless `config` names another), or the graphs of an export
    of task.graph_source (refusing another task's export or one that cannot be exported)."""
    from src.infer.graphs import CheckpointGraphs, ExportedGraphs
    from src.train.checkpoint import load_run_config, resolve_checkpoint
    source = _TASKS[task.graph_source]
    if mindir:
        if not source.exportable:
            raise ConfigError(f"{needed_by or task.name} runs the Python network only (no --mindir)")
        graphs = ExportedGraphs(mindir, overrides)
        graphs.require(source.name, needed_by or task.name)
        return graphs.cfg, graphs
    cfg = load_run_config(ckpt, config, list(overrides))
    graphs = CheckpointGraphs(cfg, resolve_checkpoint(ckpt), source.graphs)
    graphs.trained_on = load_run_config(ckpt, config).data.path
    return cfg, graphs


def infer_task(source_task: str) -> Optional[str]:
    """The task infer.py runs by default for a run or export of `source_task`."""
    for name in names("infer"):
        if source_task in _TASKS[name].infer_from:
            return name
    return None
