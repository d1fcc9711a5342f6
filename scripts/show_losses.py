"""Summarise a training log: each loss averaged over the first and the last steps of the run.

    python scripts/show_losses.py runs/demo/pretrain/train_log.jsonl [--window 10]
"""
from __future__ import annotations

import argparse
import json
import sys

SKIP = {"step", "epoch", "lr", "loss_scale", "grad_norm", "overflow", "step_time", "samples_per_s"}


def summarise(entries: list, window: int) -> list:
    """[(name, mean over the first `window` steps, mean over the last `window` steps)] for every logged loss."""
    names = [k for k in entries[0] if k not in SKIP]
    head, tail = entries[:window], entries[-window:]
    return [(n, sum(e[n] for e in head) / len(head), sum(e[n] for e in tail) / len(tail)) for n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--window", type=int, default=10)
    args = ap.parse_args(argv)
    with open(args.log, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    if not entries:
        print(f"{args.log}: no steps logged", file=sys.stderr)
        return 1
    w = min(args.window, max(1, len(entries) // 2))
    timed = entries[1:] or entries
    print(f"{len(entries)} steps, {sum(e['step_time'] for e in timed) / len(timed):.2f} s/step after the first; "
          f"mean of steps 1-{w} vs the last {w}:")
    print(f"{'loss':>10} {'first':>9} {'last':>9} {'change':>8}")
    for name, first, last in summarise(entries, w):
        print(f"{name:>10} {first:9.4f} {last:9.4f} {100 * (last - first) / abs(first or 1):+7.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
