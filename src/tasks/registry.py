"""Tasks as data: each module under src/tasks/ registers what it offers, and the entry points (train.py, eval.py,
export.py, infer.py) list and run what is registered. A new task is a new module here that calls `register`, a config
and its tests; no entry point and no shared file changes.

A task may offer any of:
- `settings`: its config section, a dataclass read from the recipe's top-level key of the task's name (src/config.py
  registers it; docs/configuration.md lists it);
- `training`: how train.py trains it (`Training`: the loss cell builder, the names of its losses, optional warm start
  and per-checkpoint hook);
- `graphs(cfg, ckpt) -> GraphSet`: its inference cells by name (src/infer/graphs.py), which export.py writes and
  which evaluation and inference run from a checkpoint or from those exported files alike;
- `evaluate(run: EvalRun)` -> the printed table, filling run.report (eval.py --task NAME);
- `infer(args, graphs, cfg)` -> printed lines: one input file or text (infer.py);
- `flags`: its own command-line flags for an entry point (`Flags`, by role: "evaluate", "infer").
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from src.config import Config, ConfigError, register_section


@dataclass(frozen=True)
class Training:
    """How train.py trains a task (src/train/trainer.fit runs the loop)."""
    build: Callable                       # (cfg, num_shards, shard_id) -> (loss cell, make_dataset, batches per epoch)
    loss_names: Tuple[str, ...]           # the losses the loss cell returns beside the total, in order
    warm_start: Optional[Callable] = None        # (cfg, loss cell) -> a callable run before the first step, or None
    after_checkpoint: Optional[Callable] = None  # (cfg, loss cell) -> hook(output_dir, step) after each checkpoint


@dataclass(frozen=True)
class Flags:
    """A task's own command-line flags for one entry point."""
    add: Callable                         # add(group): the flags, listed under the task's name in --help
    gives_input: Callable = lambda args: False  # infer.py: whether they name an input (no --image/--audio/--text)
    complete: Optional[Callable] = None   # complete(parser, args): what they imply, before the entry point checks


@dataclass(frozen=True)
class Task:
    name: str
    module: str                               # where it registered
    training: Optional[Training] = None
    settings: Optional[type] = None           # its config section (top-level key: the task's name)
    renamed: Dict[str, str] = field(default_factory=dict)  # keys of its section that an earlier version kept elsewhere
    graphs: Optional[Callable] = None         # (cfg, ckpt) -> GraphSet
    exportable: bool = True                   # export.py writes its graphs
    evaluate: Optional[Callable] = None       # (EvalRun) -> table lines
    graphs_of: Optional[str] = None           # the task whose graphs evaluate / infer run (default: its own)
    infer: Optional[Callable] = None          # (args, graphs, cfg) -> lines to print
    infer_from: tuple = ()                    # the tasks of the runs / exports infer.py uses it for by default
    flags: Dict[str, Flags] = field(default_factory=dict)  # role (evaluate, infer) -> its own flags there
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
    if task.settings is not None:
        register_section(task.name, task.settings, task.renamed)
    _TASKS[task.name] = task
    return task


def registered() -> Dict[str, Task]:
    """Every task: importing each module of src/tasks/ (this module's folder) registers its tasks."""
    package = __name__.rsplit(".", 1)[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{package}.{info.name}")
    return dict(sorted(_TASKS.items()))


def names(role: str) -> List[str]:
    """The registered tasks that offer `role`: train, evaluate, export or infer."""
    has = {"train": lambda t: t.training is not None, "evaluate": lambda t: t.evaluate is not None,
           "export": lambda t: t.graphs is not None and t.exportable, "infer": lambda t: t.infer is not None}[role]
    return [name for name, task in registered().items() if has(task)]


def get(name: str, role: str, where: str = "task") -> Task:
    known = names(role)
    if name not in known:
        raise ConfigError(f"{where}: no task '{name}' can {role} (those that can: {', '.join(known)})")
    return _TASKS[name]


def training(name: str, where: str = "task") -> Training:
    """How the trainable task `name` trains."""
    return get(name, "train", where).training


def add_flags(parser, role: str) -> None:
    """Each registered task's own flags for the entry point of `role`, in a group under the task's name."""
    for name, task in registered().items():
        if role in task.flags:
            task.flags[role].add(parser.add_argument_group(f"--task {name}"))


def complete_flags(parser, args, role: str) -> bool:
    """Let each task fill in what its flags imply; whether any task's flags name an input."""
    given = False
    for task in registered().values():
        flags = task.flags.get(role)
        if flags is not None:
            if flags.complete is not None:
                flags.complete(parser, args)
            given = given or bool(flags.gives_input(args))
    return given


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
    cfg = run_config(ckpt, config, overrides)
    graphs = CheckpointGraphs(cfg, resolve_checkpoint(ckpt), source.graphs)
    graphs.trained_on = load_run_config(ckpt, config).data.path
    return cfg, graphs


def run_config(ckpt: str, config: Optional[str] = None, overrides=()) -> Config:
    """The config of the run of `ckpt` (its config.yaml, or the recipe `config`) with overrides, reading the run's
    data settings when its training data is not on this machine."""
    from src.data.lineage import data_or_settings, settings_of_run
    from src.train.checkpoint import load_run_config
    cfg = load_run_config(ckpt, config, list(overrides))
    data_path = data_or_settings(cfg.data.path, settings_of_run(ckpt))
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=data_path))


def infer_task(source_task: str) -> Optional[str]:
    """The task infer.py runs by default for a run or export of `source_task`."""
    for name in names("infer"):
        if source_task in _TASKS[name].infer_from:
            return name
    return None
