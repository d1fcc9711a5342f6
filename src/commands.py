"""What every command of the project shares, below the layers (the entry points, `python -m src...` tools and
scripts/*.py): the exit status convention, one-line errors and the --set syntax.

Exit status: 0 done; 1 failed, from a bug (a traceback) or from something outside the program and what it was given
(a full disk: one line); 2 a usage or input error: a bad flag or a missing argument (argparse's usage), a missing or
bad file, a bad config key or value, bad data (one line). A one-line error is `error: ...` on stderr; OPT_DEBUG=1 in
the environment lets its traceback through."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

DONE, FAILED, USAGE = 0, 1, 2


class InputError(ValueError):
    """A bad input no more particular class names (a file that is not what the command reads); the message names it.
    Answered with one line and exit status 2, as FileNotFoundError is."""


class OutsideError(RuntimeError):
    """A failure outside the program and what it was given (a full disk, a write the system refused); the message
    says what happened and what was kept. Answered with one line and exit status 1."""


def debugging() -> bool:
    """OPT_DEBUG=1: errors are raised with their traceback instead of being answered in one line."""
    return os.environ.get("OPT_DEBUG", "") not in ("", "0")


def error_line(message) -> None:
    """The one line of an error, on stderr."""
    print(f"error: {message}", file=sys.stderr)


def run_main(body: Callable[[], int], user_errors: tuple = ()) -> int:
    """body()'s exit status (None counts as 0); for an input or usage error (an InputError, a FileNotFoundError or one
    of `user_errors`) one line and 2, for an OutsideError one line and 1; any other exception (a bug) propagates with
    its traceback (exit 1)."""
    try:
        return body() or DONE
    except OutsideError as e:  # before user_errors: a failed write of preparation is also a PrepareError
        if debugging():
            raise
        error_line(e)
        return FAILED
    except (InputError, FileNotFoundError) + tuple(user_errors) as e:
        if debugging():
            raise
        error_line(e)
        return USAGE


def add_set_arg(parser: argparse.ArgumentParser, dest: str = "set", help: str = "override config values") -> None:
    """--set KEY=VALUE, the same on every command: several values after one --set, or one --set per value (both
    forms mix: `--set a.b=1 c.d=2 --set e.f=3`). A --set with no value is allowed (and sets nothing), so that a
    caller can pass `--set "${overrides[@]}"` whatever the list holds."""
    parser.add_argument("--set", dest=dest, nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"{help}, e.g. --set train.lr=1e-4 data.batch_size=8 (or one --set per value)")
