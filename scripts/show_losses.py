"""Summarise a training log: each loss averaged over the first and the last steps of the run.

    python scripts/show_losses.py runs/demo/pretrain/train_log.jsonl [--window 10]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.commands import InputError, run_main  # noqa: E402

SKIP = {"step", "epoch", "lr", "loss_scale", "grad_norm", "overflow", "step_time", "samples_per_s"}


def summarise(entries: list, window: int) -> list:
    """[(name, mean over the first `window` steps, mean over the last `window` steps)] for every logged loss."""
    names = [k for k in entries[0] if k not in SKIP]
    head, tail = entries[:window], entries[-window:]
    return [(n, sum(e[n] for e in head) / len(head), sum(e[n] for e in tail) / len(tail)) for n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", help="a run's train_log.jsonl")
    ap.add_argument("--window", type=int, default=10, help="steps averaged at each end (default 10)")
    args = ap.parse_args(argv)
    return run_main(lambda: show(args.log, args.window))


def read_log(path: str) -> list:
    """The logged steps of a train_log.jsonl; an InputError names the line that is not one."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"training log not found: {path}")
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not JSON ({e.msg}); is it a train_log.jsonl?") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("step_time"), (int, float)):
                raise InputError(f"{path}:{n}: not a logged step (no step_time); is it a train_log.jsonl?")
            entries.append(entry)
    if not entries:
        raise InputError(f"{path}: no steps logged")
    return entries


def show(path: str, window: int) -> int:
    entries = read_log(path)
    w = min(window, max(1, len(entries) // 2))
    try:
        rows = summarise(entries, w)
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: the logged steps differ in their losses ({e})") from None
    timed = entries[1:] or entries
    print(f"{len(entries)} steps, {sum(e['step_time'] for e in timed) / len(timed):.2f} s/step after the first; "
          f"mean of steps 1-{w} vs the last {w}:")
    print(f"{'loss':>10} {'first':>9} {'last':>9} {'change':>8}")
    for name, first, last in rows:
        print(f"{name:>10} {first:9.4f} {last:9.4f} {100 * (last - first) / abs(first or 1):+7.1f}%")
    return 0

if __name__ == "__main__":
    sys.exit(main())
