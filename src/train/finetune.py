"""Fine-tune a pre-trained run on prepared data: the body of scripts/run_standalone_train_retrieval.sh and
scripts/train_caption.sh.

    python train.py --finetune TASK PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]

The model's shape comes from PRETRAINED's run (a recipe whose model section names another is refused); the training
settings from RECIPE (default: config/<task>_finetune.yaml); DATA must be prepared like PRETRAINED's data
(prepare_data.sh --like PRETRAINED). A rerun resumes the run in OUT; an OUT that holds a run of another recipe or
other data is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import yaml

from src.config import Config, ConfigError, load_config, to_dict
from src.train.checkpoint import load_run_config

ROOT = Path(__file__).resolve().parents[2]
# what makes the weights fit: taken from the pre-trained run (the audio positions are sized by data.max_audio_tokens).
# A recipe may set a decoder's layers to 0 (not built).
SHAPE = ("model.hidden", "model.layers", "model.heads", "model.intermediate", "model.max_positions",
         "model.layer_norm_eps", "model.decoder_layers", "model.vision_decoder_layers", "data.max_audio_tokens")
# settings a rerun may change and still continue the same run
CONTINUABLE = {"train.max_steps", "train.epochs", "train.max_minutes", "train.save_every", "train.log_every",
               "train.keep_checkpoints", "model.init_from"}
PATH_KEYS = ("data.path", "train.output_dir", "model.init_from")  # compared as the folders they name


def _value(cfg: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _unbuilt(key: str, value) -> bool:
    return key.endswith("decoder_layers") and value == 0


def recipe_shape_conflicts(recipe: str, pretrained: Config) -> List[str]:
    """The shape keys the recipe file sets to other values than the pre-trained run (0 layers of a decoder is not
    building it, always allowed)."""
    given = flat(yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {})
    return [f"{key} {given[key]} (pre-trained: {_value(pretrained, key)})" for key in SHAPE
            if key in given and given[key] != _value(pretrained, key) and not _unbuilt(key, given[key])]


def shape_overrides(recipe: str, pretrained: Config) -> List[str]:
    given = flat(yaml.safe_load(Path(recipe).read_text(encoding="utf-8")) or {})
    return [f"{key}={_value(pretrained, key)}" for key in SHAPE if not _unbuilt(key, given.get(key))]


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_conflicts(out: Path, cfg: Config) -> List[str]:
    """The settings in which the run already in `out` differs from `cfg` (none: the same run, to resume)."""
    previous = flat(to_dict(load_config(str(out / "config.yaml"))))
    wanted = flat(to_dict(cfg))
    for key in PATH_KEYS:  # one folder, written relative once and absolute another time
        if previous.get(key) and wanted[key] and Path(previous[key]).resolve() == Path(wanted[key]).resolve():
            previous[key] = wanted[key]
    return [key for key in wanted if key not in CONTINUABLE and previous.get(key) != wanted[key]]


def finetune_config(task: str, pretrained: str, data: str, out: str, recipe: str, overrides: List[str]) -> Config:
    try:
        base = load_run_config(pretrained)
    except (ConfigError, FileNotFoundError) as e:
        raise ConfigError(f"PRETRAINED {pretrained}: not a run of train.py ({e})") from None
    conflicts = recipe_shape_conflicts(recipe, base)
    if conflicts:
        raise ConfigError(f"{recipe} sets {', '.join(conflicts)}: the model's shape comes from the pre-trained run; "
                          "drop those keys from the recipe or choose one for this model size")
    # recorded absolute: the run is then found, evaluated and resumed from any working directory
    data, out, pretrained = (str(Path(p).resolve()) for p in (data, out, pretrained))
    cfg = load_config(recipe, shape_overrides(recipe, base) + [
        f"data.path={data}", f"train.output_dir={out}", f"model.init_from={pretrained}"] + overrides)
    if cfg.task != task:
        raise ConfigError(f"{recipe} trains task '{cfg.task}', not '{task}'")
    if (Path(out) / "config.yaml").is_file():
        differ = run_conflicts(Path(out), cfg)
        if differ:
            shown = ", ".join(differ[:4]) + (" ..." if len(differ) > 4 else "")
            raise ConfigError(f"{out} holds a run of another recipe or data (differs in {shown}): choose another OUT, "
                              "or delete it to start over")
    return cfg


def finetune_from_arguments(values: List[str]) -> Config:
    """train.py --finetune TASK PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...] -> the run's config."""
    if len(values) < 4:
        raise ConfigError("--finetune takes TASK PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]")
    task, pretrained, data, out, *rest = values
    recipe = str(ROOT / "config" / f"{task}_finetune.yaml")
    if rest and "=" not in rest[0]:
        recipe = rest.pop(0)
    if not Path(recipe).is_file():
        raise ConfigError(f"recipe not found: {recipe}" + ("" if rest else f" (no fine-tuning recipe for '{task}')"))
    return finetune_config(task, pretrained, data, out, recipe, rest)
