"""Commands that cannot rot: every command in a bash block of README.md and docs/*.md names scripts, entry points,
files, flags and config keys that exist (flags against each entry point's own parser, or the usage header of a shell
script; keys against the config dataclasses), and the configuration reference equals the dataclasses."""
import argparse
import dataclasses
import importlib
import importlib.util
import re
import shlex
import typing
from pathlib import Path

import pytest

import src.config_docs as config_docs
from src.config import Config
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHONS = {"python", "python3", "$PY", "$PYTHON", ".venv/bin/python"}
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}
REPO_PATH = re.compile(r"^(?:\./)?(config|scripts|bench|docs|src|tests)/[\w./-]+$")
CONFIG_KEY = re.compile(r"^([a-z_]+(?:\.[a-z_0-9]+)+)=")
PLACEHOLDER = re.compile(r"[A-Z]{2,}|\*|\{|\$")


def bash_commands(page: Path):
    """(line number, command) for each command line of the page's ```bash blocks, continuations joined."""
    lines = page.read_text(encoding="utf-8").splitlines()
    inside, pending, start = False, "", 0
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command, pending = pending + line, ""
        if command.strip() and not command.lstrip().startswith("#"):
            yield start, command


def simple_commands(command: str):
    """The words of each simple command of a shell line (split at && ; | and the like; leading VAR=value dropped)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = []
    for token in list(lexer) + [";"]:
        if token in OPERATORS:
            while words and re.match(r"^[A-Za-z_]+=", words[0]):
                words.pop(0)
            if words:
                yield words
            words = []
        else:
            words.append(token)


def config_key_problem(dotted: str):
    """None when `dotted` (section.key...) names a key of Config, else what is wrong."""
    cls, parts = Config, dotted.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return f"unknown config key '{dotted}'"
        hint = typing.get_type_hints(cls)[part]
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(hint):
                return f"'{'.'.join(parts[:i + 1])}' has no sub-keys ('{dotted}')"
            cls = hint
    return None


class Parsed(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


def entry_point_flags(target: str, module: bool):
    """The option strings of an entry point's argparse parser: its main() is called with the parser patched to
    hand itself over instead of parsing."""
    original = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def capture(self, *args, **kwargs):
        raise Parsed(self)
    if module:
        loaded = importlib.import_module(target)
    else:
        spec = importlib.util.spec_from_file_location(f"docs_entry_{Path(target).stem}", ROOT / target)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = capture
    try:
        loaded.main([])
    except Parsed as parsed:
        return parser_flags(parsed.parser)
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = original
    raise AssertionError(f"{target}: main() parsed no arguments")


def parser_flags(parser) -> set:
    """A parser's option strings, with those of its sub-commands."""
    flags = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= parser_flags(sub)
    return flags


def script_header(path: Path) -> str:
    lines = path.read_text().splitlines()[1:]
    return "\n".join(line for line in lines[:next((i for i, text in enumerate(lines) if not text.startswith("#")),
                                                  len(lines))])


_flags_cache = {}


def problems_of(words):
    """What is wrong with one simple command's words (empty when nothing)."""
    found = []
    targets = set(words[:3]) if words[0] in PYTHONS or words[0] == "bash" else set()  # checked below
    for word in words:
        if (word not in targets and REPO_PATH.match(word) and not PLACEHOLDER.search(word)
                and not (ROOT / word).exists()):
            found.append(f"no file {word}")
        key = CONFIG_KEY.match(word)
        if key and key.group(1).split(".")[0] in {f.name for f in dataclasses.fields(Config)}:
            problem = config_key_problem(key.group(1))
            if problem:
                found.append(problem)
    flags = {w.split("=")[0] for w in words[1:] if w.startswith("--") and len(w) > 2}
    if words[0] == "bash" and len(words) > 1 and words[1].endswith(".sh"):
        path = ROOT / words[1]
        if not path.is_file():
            return found + [f"no script {words[1]}"]
        header = script_header(path)
        found += [f"{words[1]}: its usage header does not mention {flag}" for flag in sorted(flags)
                  if not re.search(re.escape(flag) + r"\b", header)]
    elif words[0] in PYTHONS and len(words) > 1:
        module = words[1] == "-m"
        target = words[2] if module else words[1]
        if not module and not (ROOT / target).is_file():
            return found + [f"no entry point {target}"]
        if module and not (ROOT / (target.replace(".", "/") + ".py")).is_file():
            return found + [f"no module {target}"]
        if target not in _flags_cache:
            _flags_cache[target] = entry_point_flags(target, module)
        found += [f"{target} has no flag {flag}" for flag in sorted(flags - _flags_cache[target])]
    return found


def test_every_documented_command_names_what_exists():
    problems, checked = [], 0
    for page in PAGES:
        for number, command in bash_commands(page):
            for words in simple_commands(command):
                checked += 1
                problems += [f"{page.relative_to(ROOT)}:{number}: {p}" for p in problems_of(words)]
    assert checked > 50, "the pages hold fewer commands than expected: is the block parser broken?"
    assert not problems, "\n".join(problems)


def test_the_checker_catches_what_it_should():
    assert problems_of(["bash", "scripts/nope.sh"]) == ["no script scripts/nope.sh"]
    assert problems_of(["python", "train.py", "--config", "config/pretrain_tiny.yaml", "--sets", "x"]) == [
        "train.py has no flag --sets"]
    assert problems_of(["python", "eval.py", "--set", "train.lrr=1", "data.path=x"]) == [
        "unknown config key 'train.lrr'"]
    assert problems_of(["bash", "scripts/prepare_data.sh", "A", "B", "--formats", "coco"]) == [
        "scripts/prepare_data.sh: its usage header does not mention --formats"]
    assert problems_of(["ls", "config/no_such.yaml", "config/RECIPE.yaml"]) == ["no file config/no_such.yaml"]
    assert list(simple_commands("A=1 python x.py --a 'b c' && bash y.sh | tee z # note")) == [
        ["python", "x.py", "--a", "b c"], ["bash", "y.sh"], ["tee", "z"]]


# the Python commands, each with the usage text that must name every flag of its parser: its module docstring, or the
# header comment of the script that runs it
USAGE_TEXTS = {
    "train.py": None, "eval.py": None, "infer.py": None, "export.py": None,
    "src.data.prepare": "scripts/prepare_data.sh", "src.data.extract": "scripts/extract_features.sh",
    "src.data.tokenizer": None, "src.tasks.dvae_codes": None, "src.train.rank_table": None,
    "src.config_docs": None, "scripts/show_losses.py": None, "scripts/make_demo_data.py": None,
    "scripts/make_demo_vqa.py": None, "src.serve.__main__": "scripts/serve.sh",
}


@pytest.mark.parametrize("target", list(USAGE_TEXTS))
def test_every_usage_text_names_every_flag(target):
    module = not target.endswith(".py")
    flags = entry_point_flags(target, module) - {"-h", "--help"}
    if module:
        doc = importlib.import_module(target).__doc__
    else:
        spec = importlib.util.spec_from_file_location(f"usage_{Path(target).stem}", ROOT / target)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        doc = loaded.__doc__
    texts = {target: doc or ""}
    if USAGE_TEXTS[target]:
        texts[USAGE_TEXTS[target]] = script_header(ROOT / USAGE_TEXTS[target])
    for where, text in texts.items():
        missing = sorted(f for f in flags if not re.search(re.escape(f) + r"\b", text))
        assert not missing, f"{where} does not mention {', '.join(missing)}"


def test_configuration_reference_is_generated_from_the_dataclasses():
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == config_docs.reference_markdown(), (
        "run: python -m src.config_docs --write docs/configuration.md")
    assert "| `train.lr` | float | `5e-05` | peak learning rate (AdamW) |" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["train.py", "eval.py", "infer.py", "export.py"])
def test_entry_point_help_runs(name, capsys):
    spec = importlib.util.spec_from_file_location(f"help_{Path(name).stem}", ROOT / name)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    with pytest.raises(SystemExit) as done:
        loaded.main(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out


def test_every_relative_link_of_the_pages_exists():
    broken = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                path = target.split("#")[0]
                if path and not re.match(r"^[a-z]+://", path) and not (page.parent / path).exists():
                    broken.append(f"{page.relative_to(ROOT)}:{number}: {target}")
    assert not broken, "\n".join(broken)


TASK_PAGES = ("install", "own_data", "data", "pretraining", "distributed", "retrieval", "captioning", "vqa", "probe",
              "text_to_image", "deployment", "configuration", "performance", "reliability", "results", "development")


def test_readme_is_short_and_every_task_page_says_what_it_is_for_and_its_errors():
    assert len((ROOT / "README.md").read_text(encoding="utf-8")) <= 20_000
    for name in TASK_PAGES:
        text = (ROOT / "docs" / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith("# "), name
        assert text.split("\n\n")[1].strip(), f"{name}.md: no opening paragraph"
        assert "\n## Errors you may meet here\n" in text, f"{name}.md: no errors section"
        assert f"docs/{name}.md" in (ROOT / "README.md").read_text(encoding="utf-8"), f"README: no link to {name}.md"
