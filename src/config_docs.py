"""The configuration reference (docs/configuration.md), generated from the dataclasses of src/config.py and the task
sections the tasks of src/tasks/ register, so that it cannot go stale: every key with its type, default and the
comment written beside it in the source.

    python -m src.config_docs --write docs/configuration.md    # after changing a config dataclass
    python -m src.config_docs --check docs/configuration.md    # exit 1 when the page differs, 2 when it is missing
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import sys
import tokenize
import typing
from pathlib import Path
from typing import Dict, List, Tuple

from src.commands import DONE, FAILED, error_line, run_main
from src.config import SECTIONS, Config
from src.files import write_text_atomic
from src.tasks import registry

FIELD = re.compile(r"^\s+(\w+)\s*:")
HEADER = """# Configuration reference

What every key of a recipe means and what it is when a recipe does not set it. One config system serves every entry
point: a YAML recipe of `config/` is loaded into the dataclasses of `src/config.py`, then `key=value` overrides are
applied: `python train.py --config RECIPE --set train.lr=1e-4 data.batch_size=16`, and the same `--set` for `eval.py`,
`infer.py` and `export.py`; the shell scripts take the overrides as trailing `key=value` words. Lists are written in
YAML (`--set "train.betas=[0.9, 0.98]"`). `python train.py --config RECIPE [--set ...] --show KEY` prints one value.
A task's own section (`caption`, `retrieval`, `t2i`, `vqa`) is declared by the task in `src/tasks/`; a key an earlier
version kept elsewhere (`loss.vqa`, now `vqa.weight`) is still read from old recipes and runs.

This page is generated from the source (`python -m src.config_docs --write docs/configuration.md`); a test fails when
it differs from the dataclasses. The recipes in `config/` are named `TASK_SIZE.yaml`: `tiny` (tests), `demo` (the
CPU demo), `base` (the paper's model, GPU/Ascend), `coco` (base-size fine-tuning on COCO), `finetune` (the
fine-tuning scripts' training settings, the model's shape coming from the pre-trained run).
"""
FOOTER = """
## Errors you may meet here

| message | what it means |
|---|---|
| `--set data.bach_size: unknown key 'bach_size' (did you mean 'batch_size'?)` | a misspelt key (in a recipe: the message names the file); nothing is ignored silently |
| `--set: 'train.lr' expects float, got str 'fast'` | a value of the wrong type |
| `config file not found: PATH` | the recipe path is wrong (paths are relative to where you run the command) |
| `override 'train.lr' must look like key.sub=value` | an override without `=` |
"""


def field_comments(cls: type) -> Dict[str, str]:
    """Field name -> the comments written for it in the class source: the lines above it, the one after it on its
    line, and the comment lines below that continue the latter (their text aligned with its text)."""
    lines = inspect.getsource(cls).splitlines()
    comments: Dict[int, Tuple[int, str]] = {}  # line index -> (column where its text starts, text)
    for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
        if tok.type == tokenize.COMMENT:
            body = tok.string[1:]
            comments[tok.start[0] - 1] = (tok.start[1] + 1 + len(body) - len(body.lstrip()), body.strip())
    out: Dict[str, List[str]] = {}
    above: List[str] = []
    current, trailing_column = None, -1
    for i, line in enumerate(lines):
        match = FIELD.match(line)
        if match and not line.lstrip().startswith("#"):
            current = match.group(1)
            out[current] = list(above)
            above = []
            trailing_column = comments[i][0] if i in comments else -1
            if i in comments:
                out[current].append(comments[i][1])
        elif i in comments and line.lstrip().startswith("#"):
            column, text = comments[i]
            if current is not None and column == trailing_column:
                out[current].append(text)
            else:
                above.append(text)
                current, trailing_column = None, -1
        else:
            current, trailing_column = None, -1
    return {name: " ".join(t for t in texts if t) for name, texts in out.items()}


def type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (list, List):
        return f"list of {type_name(typing.get_args(hint)[0])}"
    if origin in (dict, Dict):
        return "mapping of {} to {}".format(*map(type_name, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))


def default_text(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if isinstance(value, str):
        return f"`\"{value}\"`" if value else "`\"\"`"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def section_rows(cls: type, prefix: str) -> Tuple[List[Tuple[str, str, str, str]], List[Tuple[str, type]]]:
    """(key, type, default, meaning) rows of `cls`'s plain fields, and its nested sections."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        if f.name == "sections":  # the registered sections: listed after the shared ones
            nested.extend((prefix + name, section) for name, section in sorted(SECTIONS.get(cls, {}).items()))
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            nested.append((prefix + f.name, hint))
            continue
        meaning = comments.get(f.name, "").replace("|", "\\|")
        rows.append((prefix + f.name, type_name(hint), default_text(f), meaning))
    return rows, nested


def render_section(name: str, cls: type) -> str:
    rows, nested = section_rows(cls, f"{name}." if name else "")
    doc = inspect.getdoc(cls) if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(") else ""
    parts = []
    if rows:
        parts.append(f"## `{name}`\n" if name else "## Top level\n")
        if doc:
            parts.append(" ".join(doc.split()) + "\n")
        parts.append("| key | type | default | meaning |\n|---|---|---|---|")
        parts.extend(f"| `{key}` | {kind} | {default} | {meaning} |" for key, kind, default, meaning in rows)
        parts.append("")
    for sub_name, sub_cls in nested:
        parts.append(render_section(sub_name, sub_cls))
    return "\n".join(parts)


def reference_markdown(root: type = Config) -> str:
    registry.registered()  # every task's section
    return HEADER + "\n" + render_section("", root).rstrip() + "\n" + FOOTER


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="PAGE", help="write the reference to PAGE")
    action.add_argument("--check", metavar="PAGE", help="exit 1 when PAGE differs from the reference (2: no PAGE)")
    args = p.parse_args(argv)
    return run_main(lambda: _write_or_check(args))


def _write_or_check(args) -> int:
    text = reference_markdown()
    if args.write:
        write_text_atomic(args.write, text)
        return DONE
    page = Path(args.check)
    if not page.is_file():
        raise FileNotFoundError(f"{page} not found: write it with python -m src.config_docs --write {page}")
    if page.read_text(encoding="utf-8") != text:  # the check failed: exit status 1, as diff's
        error_line(f"{page} differs from the config dataclasses: run python -m src.config_docs --write {page}")
        return FAILED
    return DONE

if __name__ == "__main__":
    sys.exit(main())
