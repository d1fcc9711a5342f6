"""Where the time of one pre-training step goes: MindSpore's profiler over a few graph-mode steps, summed by op type.

    python bench/profile_train.py --config config/pretrain_demo.yaml --steps 3

Prints the op types that take the most time (total ms per step, share, calls per step) and writes the profiler's
own files under --out for a closer look.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mindspore as ms  # noqa: E402

from bench_train import mindspore_step, read_batches  # noqa: E402
from src.commands import add_set_arg  # noqa: E402
from src.config import load_config  # noqa: E402


def op_rows(out: Path) -> list:
    """(op type, full op name, total ms, calls) of every op in the profiler's per-op CSV."""
    files = sorted(out.rglob("cpu_op_detail_info_*.csv"))
    if not files:
        raise SystemExit(f"no cpu_op_detail_info CSV under {out}")
    with open(files[0], newline="") as f:
        return [(r["op_type"], r["full_op_name"], float(r["op_total_time(ms)"]), int(r["op_occurrences"]))
                for r in csv.DictReader(f)]


def summed(rows, key) -> list:
    """(group, total ms, calls) summed by key(row), largest first."""
    totals, calls = defaultdict(float), defaultdict(int)
    for row in rows:
        totals[key(row)] += row[2]
        calls[key(row)] += row[3]
    return sorted(((k, totals[k], calls[k]) for k in totals), key=lambda r: -r[1])


def scope(full_name: str, depth: int = 3) -> str:
    """'Default/loss_net-PretrainLoss/net-OPT/encoder-Encoder/...' -> its first `depth` parts, forward or gradient."""
    parts = full_name.split("/")
    return "/".join(p.split("-")[0] for p in parts[:depth])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    add_set_arg(ap)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--depth", type=int, default=4, help="scope levels to sum by")
    ap.add_argument("--out", default="/tmp/opt_profile")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.set)
    _, batches = read_batches(cfg, args.steps + 1)
    step, tensors = mindspore_step(cfg, batches)
    step(True, *tensors[0])[0].asnumpy()  # compile outside the profile
    profiler = ms.Profiler(output_path=args.out)
    for b in tensors[1:]:
        step(True, *b)[0].asnumpy()
    profiler.analyse()
    rows = op_rows(Path(args.out))
    whole = sum(r[2] for r in rows)
    for title, key in (("op type", lambda r: r[0]), ("scope", lambda r: scope(r[1], args.depth))):
        print(f"{title:<48} {'ms/step':>9} {'share':>6} {'calls/step':>10}")
        for name, ms_total, n in summed(rows, key)[:args.top]:
            print(f"{name[:48]:<48} {ms_total / args.steps:9.1f} {100 * ms_total / whole:5.1f}% {n / args.steps:10.0f}")
        print(f"{'all ops':<48} {whole / args.steps:9.1f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
