"""The one checkpoint format: a MindSpore `.ckpt` of the whole train step (network weights, optimizer moments and step,
loss-scale state) plus the run position (optimizer step, epoch, batch within the epoch). Written under a temporary
name and renamed, so a run killed mid-write never leaves a truncated checkpoint behind.

Each checkpoint has a sidecar `step_<n>.ckpt.sha256` with the SHA-256 of the bytes read back after writing. A run
directory resolves to its newest checkpoint that verifies (checksum, or for one without a sidecar: MindSpore can read
it); damaged ones are named with the reason and skipped, never deleted. Retention deletes old checkpoints only once
the new one has verified.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

import mindspore as ms
import numpy as np

from src.commands import OutsideError
from src.config import ConfigError, load_config
from src.files import file_digest
from src.model.convert import load_bert_weights

POSITION = ("step", "epoch", "batch")
SCHEDULE = "learning_rate"  # the optimizer's per-step learning-rate tables (learning_rate, learning_rate_group_<i>)
NAME = re.compile(r"^step_(\d{8})\.ckpt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot continue this run; the message names the file and what is wrong."""


class CheckpointWriteError(CheckpointError, OutsideError):
    """Writing a checkpoint failed (a full disk); the earlier ones are untouched. Exit status 1: not the input's
    fault."""


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.ckpt"


def list_checkpoints(directory: Path) -> list:
    """Finished checkpoints in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if NAME.match(p.name))


def checksum_path(ckpt: Path) -> Path:
    return Path(str(ckpt) + ".sha256")


def damage(ckpt: Path) -> Optional[str]:
    """Why `ckpt` cannot be trusted, or None when it verifies: its SHA-256 against its sidecar, or, for a checkpoint
    without one (written before sidecars, or killed between the two renames), whether MindSpore can read it."""
    ckpt = Path(ckpt)
    try:
        sidecar = checksum_path(ckpt)
        if sidecar.is_file():
            expected = (sidecar.read_text().split() or [""])[0]
            return None if file_digest(ckpt) == expected else \
                f"its SHA-256 differs from {sidecar.name} (the file changed after it was written)"
        ms.load_checkpoint(str(ckpt))
        return None
    except (OSError, RuntimeError, ValueError, TypeError) as e:
        return f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'})"


def latest_checkpoint(directory: Path, log=None) -> Optional[Path]:
    """The newest checkpoint of `directory` that verifies (None when it has none at all). Damaged ones are reported
    through `log` and skipped; when every one is damaged, a CheckpointError names them."""
    found = list_checkpoints(directory)
    skipped = []
    for ckpt in reversed(found):
        reason = damage(ckpt)
        if reason is None:
            if skipped and log is not None:
                for bad, why in skipped:
                    log(f"warning: skipped {bad}: {why}; it is left in place")
            return ckpt
        skipped.append((ckpt, reason))
    if skipped:
        listed = "; ".join(f"{p.name}: {why}" for p, why in skipped)
        raise CheckpointError(f"{directory}: every checkpoint is damaged ({listed}); none was deleted. Start again "
                              f"without --resume into another train.output_dir, or restore a copy")
    return None


def resolve_checkpoint(path, log=print) -> Path:
    """A checkpoint file (which must verify), or the newest checkpoint of a run directory that verifies."""
    path = Path(path)
    if path.is_dir():
        newest = latest_checkpoint(path, log)
        if newest is None:
            raise CheckpointError(f"{path}: no step_*.ckpt checkpoint in this directory")
        return newest
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    reason = damage(path)
    if reason is not None:
        raise CheckpointError(f"{path}: damaged checkpoint: {reason}; give its run directory to take the newest "
                              "one that verifies")
    return path


def run_config_path(ckpt, config: Optional[str] = None) -> str:
    """The recipe a checkpoint was trained with: `config` when given, else its run directory's config.yaml."""
    ckpt = Path(ckpt)
    if not ckpt.exists():
        raise CheckpointError(f"checkpoint not found: {ckpt} (a step_*.ckpt file or a run directory)")
    if config:
        return config
    found = (ckpt if ckpt.is_dir() else ckpt.parent) / "config.yaml"
    if not found.is_file():
        raise ConfigError(f"{found} not found: pass --config with the recipe {ckpt} was trained with")
    return str(found)


def load_run_config(ckpt, config: Optional[str] = None, overrides=()):
    """The config of a checkpoint's run (see run_config_path) with `key=value` overrides."""
    return load_config(run_config_path(ckpt, config), list(overrides))


def load_weights(cell: ms.nn.Cell, path, required: Tuple[str, ...] = ("net.",)) -> List[str]:
    """Copy every parameter of `cell` that the checkpoint (or a run directory's newest) holds; the parameters whose
    names start with `required` must all be there. For starting one task from another's weights and for evaluation:
    optimizer state and heads the cell does not have are ignored."""
    path = resolve_checkpoint(path)
    params = cell.parameters_dict()
    # only what the cell has: a pre-training checkpoint also holds the optimizer's two moments of every weight and
    # the decoders (3x the fine-tuned network; read whole, 0.3 GB of it stayed resident)
    saved = read_checkpoint(path, choice=lambda name: name in params)
    loaded, missing = [], []
    for name, param in params.items():
        if name not in saved:
            if name.startswith(required):
                missing.append(name)
            continue
        value = saved[name]
        if tuple(value.shape) != tuple(param.shape):
            raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, this model {tuple(param.shape)}; "
                                  "was it written with a different model config?")
        param.set_data(value)
        loaded.append(name)
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise CheckpointError(f"{path}: {len(missing)} parameters of this model are not in the checkpoint ({shown}); "
                              "was it written with a different model config or for another task?")
    return loaded


def read_checkpoint(path: Path, choice=None) -> dict:
    """MindSpore's parameter dict of `path` (with `choice`, of the names it accepts), or a CheckpointError naming the
    file."""
    try:
        if choice is None:
            return ms.load_checkpoint(str(path))
        return ms.load_checkpoint(str(path), choice_func=choice)
    except (RuntimeError, ValueError, OSError) as e:
        if choice is not None and "empty after filter" in str(e):  # none of the names: the caller reports them
            return {}
        raise CheckpointError(f"{path}: cannot be read, the file is damaged or not a MindSpore checkpoint "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def read_parameter(path, name: str) -> Optional[np.ndarray]:
    """One parameter of a checkpoint (or a run directory's newest) as an array, None when it has none by `name`."""
    path = resolve_checkpoint(path)
    try:
        found = ms.load_checkpoint(str(path), choice_func=lambda n: n == name)
    except (RuntimeError, ValueError) as e:
        if "empty after filter" in str(e):  # MindSpore's answer when no parameter has that name
            return None
        raise CheckpointError(f"{path}: cannot be read ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                              ) from None
    return found[name].asnumpy() if name in found else None


def save_checkpoint(cell: ms.nn.Cell, directory: Path, step: int, epoch: int, batch: int, keep: int = 0) -> Path:
    """Write the checkpoint for `step` and its checksum atomically (the checksum of the bytes read back); then keep
    only the newest `keep` (0: all). A write that fails (a full disk) removes its partial file and leaves the
    earlier checkpoints as they were."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, step)
    partial = directory / f".{final.stem}.partial-{os.getpid()}.ckpt"
    sidecar = checksum_path(final)
    partial_sum = directory / f".{final.stem}.partial-{os.getpid()}.sha256"
    try:
        ms.save_checkpoint(cell, str(partial), append_dict={"step": step, "epoch": epoch, "batch": batch})
        digest = file_digest(partial)
        partial_sum.write_text(f"{digest}  {final.name}\n")
        os.replace(partial, final)
        os.replace(partial_sum, sidecar)
    except (OSError, RuntimeError) as e:
        for leftover in (partial, partial.with_suffix(".tmp"), partial_sum):  # .tmp: MindSpore's own partial file
            leftover.unlink(missing_ok=True)
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointWriteError(f"{final}: writing the checkpoint failed ({why}); the earlier checkpoints in "
                              f"{directory} are untouched") from None
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink()
            checksum_path(old).unlink(missing_ok=True)
    return final


def load_checkpoint(cell: ms.nn.Cell, path: Path) -> dict:
    """Load every parameter of `cell` from `path` (all must be there) and return the saved run position."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    params = read_checkpoint(path)
    missing_position = [k for k in POSITION if k not in params]
    if missing_position:
        raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing_position)}); "
                              "use it as model.init_from or for evaluation instead")
    position = {k: int(params.pop(k).asnumpy()) for k in POSITION}
    # the per-step learning rates come from the config, not the checkpoint: a resume may lengthen the schedule
    params.update({k: ms.Parameter(v.asnumpy(), name=k) for k, v in cell.parameters_dict().items()
                   if k.startswith(SCHEDULE)})
    try:
        not_loaded, _ = ms.load_param_into_net(cell, params)
    except (RuntimeError, ValueError) as e:  # MindSpore's message for a shape mismatch names the parameter
        raise CheckpointError(f"{path}: does not fit this model: {str(e).splitlines()[0]}") from None
    if not_loaded:
        shown = ", ".join(not_loaded[:5]) + (" ..." if len(not_loaded) > 5 else "")
        raise CheckpointError(f"{path}: {len(not_loaded)} parameters of this model are not in the checkpoint "
                              f"({shown}); was it written with a different config?")
    return position


def init_model(cell: ms.nn.Cell, init_from: str) -> List[str]:
    """Start `cell` (whose OPT network is `cell.net`) from `model.init_from`: a BERT-family safetensors file for the
    text embeddings and the encoder (the decoders' layers copy the encoder's where shapes allow), or one of our
    checkpoints / run directories for every parameter the two models share. Returns the names of the parameters
    loaded (the optimizer may treat the others, new heads, differently)."""
    if not init_from:
        return []
    if init_from == "minilm" or init_from.endswith(".safetensors"):
        report = load_bert_weights(cell, init_from, "net.embeddings.text", "net.encoder.layers",
                                   ("net.text_decoder.layers",))
        paths = dict(cell.parameters_and_names())
        return [paths[name].name for name in report["loaded"]]
    return load_weights(cell, init_from)
