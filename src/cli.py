"""What the entry points (train.py, eval.py, export.py, infer.py) share: what a user can fix (a config, a path, a
dataset, a checkpoint, an input file, an export, a missing extractor package) is answered with one line on stderr and
exit status 2, not a traceback; a full disk with one line and 1; OPT_DEBUG=1 in the environment lets the traceback
through (src/commands.py: the convention every command follows)."""
from __future__ import annotations

import argparse
from typing import Callable

from src.commands import add_set_arg, run_main
from src.config import ConfigError
from src.data.errors import ExtractorUnavailable, FeatureError, PrepareError
from src.data.records import DatasetError
from src.infer.bundle import BundleError
from src.infer.graphs import ExportError
from src.train.checkpoint import CheckpointError

USER_ERRORS = (ConfigError, DatasetError, CheckpointError, FeatureError, FileNotFoundError, ExportError, PrepareError,
               ExtractorUnavailable, BundleError)


def run_cli(body: Callable[[], int]) -> int:
    """body()'s exit status, or 2 with `error: <message>` on stderr for a user's error (1 for a full disk)."""
    return run_main(body, USER_ERRORS)


def add_source_args(parser, what: str) -> None:
    """--ckpt / --mindir / --config / --set, as eval.py and infer.py read them."""
    parser.add_argument("--ckpt", default=None, help=f"a {what} checkpoint file or its run directory")
    parser.add_argument("--mindir", default=None, help="instead of --ckpt: the bundle folder export.py wrote; its "
                                                       "graphs run in place of the Python network")
    parser.add_argument("--config", default=None, help="the recipe the checkpoint was trained with (default: the "
                                                       "run's config.yaml)")
    add_set_arg(parser)


def check_source_args(parser, args) -> None:
    if (args.ckpt is None) == (args.mindir is None):
        parser.error("give one of --ckpt and --mindir")


def task_parser(doc: str, role: str, required: bool = True, help: str = None) -> argparse.ArgumentParser:
    """An entry point's parser whose --task is one of the registered tasks that offer `role` (train, evaluate,
    export, infer), each listed with what it does under --help, and with the flags those tasks add for it."""
    from src.tasks import registry
    tasks, names = registry.registered(), registry.names(role)
    listing = "\n".join(f"  {name:<11} {tasks[name].help}" for name in names)
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="tasks:\n" + listing)
    parser.add_argument("--task", required=required, default=None, choices=names, help=help)
    registry.add_flags(parser, role)
    return parser


def entry_point(parse_args: Callable, body: Callable) -> Callable[..., int]:
    """main(argv=None) -> exit status: parse the arguments, then run body(args); a user's error is one line."""
    def main(argv=None) -> int:
        args = parse_args(argv)
        return run_cli(lambda: body(args))
    return main
