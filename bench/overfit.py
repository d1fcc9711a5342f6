"""Overfit a few batches: the first check that a task can learn at all.

    python bench/overfit.py --config config/caption_demo.yaml --batches 2 --steps 200 [--set key=value ...]

Builds the task's loss cell and train step exactly as train.py does, takes the first `--batches` batches of the
training pipeline once and trains on them over and over. A task whose losses do not fall far below their first values
here has a bug (a head, a mask, a gradient), not a data or budget problem.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402

from src.commands import add_set_arg  # noqa: E402
from src.config import load_config  # noqa: E402
from src.tasks.registry import training  # noqa: E402
from src.train.schedule import learning_rates  # noqa: E402
from src.train.step import train_step  # noqa: E402
from src.train.trainer import set_mode  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--batches", type=int, default=2, help="training batches kept and repeated")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=10, help="print the losses every this many steps")
    p.add_argument("--save", default="", help="write the trained weights to this checkpoint (to inspect them)")
    add_set_arg(p)
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set + ["train.max_steps=" + str(args.steps)])
    set_mode(cfg.train.mode, cfg.train.device)
    ms.set_seed(cfg.train.seed)
    task = training(cfg.task)
    loss_net, make_dataset, _ = task.build(cfg)
    batches = []
    for inputs in make_dataset(0, 0).create_tuple_iterator(num_epochs=1):
        batches.append(inputs)
        if len(batches) == args.batches:
            break
    rates = learning_rates(cfg.train, args.steps)
    step_cell = train_step(loss_net, cfg.train, rates)
    names = task.loss_names
    print(f"overfitting {len(batches)} batch(es) of {cfg.data.batch_size} rows, {args.steps} steps, lr {cfg.train.lr}")
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        total, losses, _, norm, _ = step_cell(True, *batches[(step - 1) % len(batches)])
        if step == 1 or step % args.every == 0 or step == args.steps:
            values = " ".join(f"{n} {v:.4f}" for n, v in zip(names, losses.asnumpy()))
            print(f"step {step:4d}  loss {float(total.asnumpy()):.4f}  {values}  grad_norm {float(norm.asnumpy()):.3f}"
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.save:
        ms.save_checkpoint(loss_net, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
