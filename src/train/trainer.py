"""The training loop shared by every task: schedule, train step, logging, checkpoints and exact resume.

A task supplies a loss cell (inputs in the dataset's column order -> (total, [each loss])), the names of its losses
and a function `make_dataset(epoch, start_batch)` that yields one epoch of batches for this rank from a given batch.
Because batches are a function of (seed, epoch, batch index) and all other state is in the checkpoint, a resumed run
continues exactly where the checkpoint was written.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import mindspore as ms
import yaml

from src.config import Config, ConfigError, to_dict
from src.files import write_text_atomic
from src.train.checkpoint import latest_checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint
from src.train.distributed import AnyRank, Ranks, parameter_fingerprint, set_device
from src.train.memory import drop_compiled_graphs, host_arrays, one_pool_block, release_freed_heap
from src.train.schedule import learning_rates
from src.train.step import train_step

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}
DEVICES = ("", "CPU", "GPU", "Ascend")


def set_mode(mode: str, device: str = "") -> None:
    if mode not in MODES:
        raise ConfigError(f"train.mode must be graph or pynative, got '{mode}'")
    if device not in DEVICES:
        raise ConfigError(f"train.device must be CPU, GPU, Ascend or empty (MindSpore's default), got '{device}'")
    ms.set_context(mode=MODES[mode])
    set_device(device)
    one_pool_block()


class TrainLog:
    """Every optimizer step as one JSON line in `train_log.jsonl`; a progress line on stdout every `every` steps.
    With `path` None (ranks other than 0) only the progress lines are written."""

    def __init__(self, path: Optional[Path], loss_names: Sequence[str], total_steps: int, every: int,
                 resume_step: int):
        self.path, self.names, self.total, self.every = path, tuple(loss_names), total_steps, max(1, every)
        self.file = None
        if path is not None:  # a resumed run drops the steps it redoes
            write_text_atomic(path, "".join(self._lines_up_to(resume_step)))
            self.file = open(path, "a", encoding="utf-8")
        self.timed_steps, self.timed_seconds = 0, 0.0

    def _lines_up_to(self, step: int) -> list:
        if step == 0 or not self.path.exists():
            return []
        return [line for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True)
                if json.loads(line)["step"] <= step]

    def record(self, step: int, epoch: int, outputs, lr: float, seconds: float, samples: int) -> dict:
        total, losses, scale, norm, overflow = outputs  # host arrays (src/train/memory.py, host_arrays)
        entry = {"step": step, "epoch": epoch, "loss": float(total),
                 **{n: float(v) for n, v in zip(self.names, losses)},
                 "lr": lr, "loss_scale": float(scale), "grad_norm": float(norm), "overflow": bool(overflow),
                 "step_time": seconds, "samples_per_s": samples / seconds}
        if self.file is not None:
            self.file.write(json.dumps(entry) + "\n")
            self.file.flush()
        if step > 1:  # the first step includes graph compilation
            self.timed_steps, self.timed_seconds = self.timed_steps + 1, self.timed_seconds + seconds
        if step % self.every == 0 or step == self.total or step == 1:
            print(self.progress_line(entry), flush=True)
        return entry

    def progress_line(self, e: dict) -> str:
        if self.timed_steps:  # the first step (graph compilation) says nothing about the rest
            per_step = self.timed_seconds / self.timed_steps
            eta = time.strftime("%H:%M:%S", time.gmtime(per_step * (self.total - e["step"])))
        else:
            eta = "--:--:--"
        losses = " ".join(f"{n} {e[n]:.4f}" for n in self.names)
        flag = " OVERFLOW (step skipped)" if e["overflow"] else ""
        return (f"step {e['step']}/{self.total} ep {e['epoch']} | loss {e['loss']:.4f} | {losses} | lr {e['lr']:.2e} "
                f"| scale {e['loss_scale']:g} | gnorm {e['grad_norm']:.3f} | {e['step_time'] * 1000:.0f} ms "
                f"{e['samples_per_s']:.1f} samples/s | eta {eta}{flag}")

    def close(self):
        if self.file is not None:
            self.file.close()


def total_steps(cfg: Config, batches_per_epoch: int) -> int:
    t = cfg.train
    if t.max_steps > 0:
        return t.max_steps
    steps = t.epochs * batches_per_epoch // t.accumulation_steps
    if steps < 1:
        raise ConfigError(f"{t.epochs} epoch(s) of {batches_per_epoch} batches make no optimizer step with "
                          f"train.accumulation_steps={t.accumulation_steps}")
    return steps


def fit(cfg: Config, loss_net: ms.nn.Cell, loss_names: Sequence[str], make_dataset: Callable,
        batches_per_epoch: int, resume: Optional[str] = None, log: Callable = print, ranks: Ranks = Ranks(),
        after_checkpoint: Optional[Callable[[Path, int], None]] = None,
        warm_start: Optional[Callable[[], None]] = None) -> dict:
    """Train `loss_net` under `cfg.train`; returns the final run position and the last step's log entry.

    In data parallel (`ranks.size` > 1) every rank runs this loop over its own shard (`make_dataset` of that rank);
    rank 0 alone writes config.yaml, train_log.jsonl and the checkpoints, and every rank resumes from the same one.
    `after_checkpoint(output_dir, step)` runs on rank 0 after each checkpoint (a task's snapshots, e.g. images).
    `warm_start()` runs once before the first step of a run that starts from scratch (not on resume).
    """
    t = cfg.train
    if t.save_every < 1 or t.log_every < 1:
        raise ConfigError(f"train.save_every and train.log_every must be at least 1 (got {t.save_every}, "
                          f"{t.log_every}); a checkpoint is always written at the last step")
    out = Path(t.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = total_steps(cfg, batches_per_epoch)
    rates = learning_rates(t, steps)
    step_cell = train_step(loss_net, t, rates)

    position = {"step": 0, "epoch": 0, "batch": 0}
    ckpt = latest_checkpoint(out, log) if resume == "auto" else (resolve_checkpoint(resume, log) if resume else None)
    if ckpt is not None:
        position = load_checkpoint(step_cell, ckpt)
        log(f"resumed from {ckpt} at step {position['step']} (epoch {position['epoch']}, batch {position['batch']})")
    else:
        if resume == "auto":
            log(f"no checkpoint in {out}: starting from scratch")
        if warm_start is not None:
            warm_start()
            drop_compiled_graphs()  # the warm start's graphs are not used again (src/train/memory.py)
    if ranks.main:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))

    trainlog = TrainLog(out / "train_log.jsonl" if ranks.main else None, loss_names, steps, t.log_every,
                        position["step"])
    any_rank = AnyRank() if ranks.distributed else bool
    step, epoch, batch = position["step"], position["epoch"], position["batch"]
    deadline = time.monotonic() + t.max_minutes * 60 if t.max_minutes > 0 else None
    micro, started, entry, compiled = 0, time.perf_counter(), {}, set()
    if step >= steps:
        log(f"the run is complete ({step} of {steps} steps); raise train.max_steps or train.epochs to go on")
    else:
        on = f", on each of {ranks.size} ranks" if ranks.distributed else ""
        log(f"training {steps} optimizer steps ({batches_per_epoch} batches per epoch{on}, "
            f"{t.accumulation_steps} per step) -> {out}")
    while step < steps:
        dataset = make_dataset(epoch, batch)
        for inputs in dataset.create_tuple_iterator(num_epochs=1):
            batch += 1
            if batch == batches_per_epoch:
                epoch, batch = epoch + 1, 0
            micro += 1
            apply = micro == t.accumulation_steps
            first_run = apply not in compiled
            if first_run:  # compiled apart, so that the heap compilation frees is returned before the run
                step_cell.compile(apply, *inputs)
                release_freed_heap()
                compiled.add(apply)
            outputs = host_arrays(step_cell(apply, *inputs))
            if first_run:  # a graph's first run builds and frees host buffers of its kernels
                release_freed_heap()
            if not apply:
                continue
            micro, step = 0, step + 1
            seconds = time.perf_counter() - started
            entry = trainlog.record(step, epoch, outputs, float(rates[step - 1]), seconds,
                                    cfg.data.batch_size * t.accumulation_steps * ranks.size)
            out_of_time = deadline is not None and any_rank(time.monotonic() > deadline)
            if ranks.main and (step % t.save_every == 0 or step == steps or out_of_time):  # the last step saves
                save_checkpoint(step_cell, out, step, epoch, batch, t.keep_checkpoints)
                if after_checkpoint is not None:
                    after_checkpoint(out, step)
            if out_of_time and step < steps:
                log(f"train.max_minutes={t.max_minutes} reached at step {step}: stopping "
                    f"(resume with --resume to continue)")
                steps = step
            if step >= steps:
                break
            started = time.perf_counter()
    trainlog.close()
    if ranks.distributed:  # equal on every rank unless the replicas diverged
        log(f"rank {ranks.rank} of {ranks.size}: parameter fingerprint {parameter_fingerprint(step_cell.weights)}")
    return {"step": step, "epoch": epoch, "batch": batch, "last": entry}
