"""Learning-rate schedules: linear warmup, then linear or cosine decay (or constant).

The whole schedule is computed once as an array with one value per optimizer step and handed to the optimizer as a
1-D tensor: the optimizer indexes it by its own `global_step`, which is saved in every checkpoint, so a resumed run
continues the schedule exactly.
"""
from __future__ import annotations

import numpy as np

from src.config import ConfigError, TrainConfig

SCHEDULES = ("linear", "cosine", "constant")


def learning_rates(cfg: TrainConfig, total_steps: int) -> np.ndarray:
    """float32 [total_steps]: the learning rate of each optimizer step."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got '{cfg.schedule}'")
    if total_steps < 1:
        raise ConfigError(f"training needs at least one step, got {total_steps}")
    step = np.arange(total_steps, dtype=np.float64)
    warmup = min(cfg.warmup_steps, total_steps)
    warm = (step + 1) / max(warmup, 1)
    # decay runs from 1 at the end of the warmup to min_lr_ratio at the last step
    progress = np.clip((step - warmup) / max(total_steps - warmup - 1, 1), 0.0, 1.0)
    if cfg.schedule == "linear":
        decay = 1.0 - progress
    elif cfg.schedule == "cosine":
        decay = 0.5 * (1.0 + np.cos(np.pi * progress))
    else:
        decay = np.ones_like(progress)
    floor = cfg.min_lr_ratio if cfg.schedule != "constant" else 1.0
    factor = np.where(step < warmup, warm, floor + (1.0 - floor) * decay)
    return (cfg.lr * factor).astype(np.float32)
