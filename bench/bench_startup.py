"""Start-up benchmark: graph compilation at the first and the second start of the same training recipe (the compile
cache, src/compile_cache.py), from a cache folder of its own.

    python bench/bench_startup.py --config config/pretrain_demo.yaml

Each start is `train.py` for a few steps in a fresh process; compile time = the first step's time less the median of
the others (train_log.jsonl), and the process's wall time from launch to exit is printed beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from src.commands import add_set_arg  # noqa: E402


def start(config: str, overrides: list, cache: Path, out: Path, steps: int) -> dict:
    env = dict(os.environ, OPT_COMPILE_CACHE=str(cache))
    t = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", config, "--set", *overrides,
                           f"train.max_steps={steps}", f"train.output_dir={out}", "train.save_every=1000000",
                           "train.max_minutes=0"], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"train.py failed:\n{done.stderr[-3000:]}")
    times = [json.loads(line)["step_time"] for line in (out / "train_log.jsonl").open()]
    return {"compile_s": times[0] - float(np.median(times[1:])), "step_s": float(np.median(times[1:])),
            "process_wall_s": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    add_set_arg(ap)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first = start(args.config, args.set, tmp / "cache", tmp / "first", args.steps)
        second = start(args.config, args.set, tmp / "cache", tmp / "second", args.steps)
        cached = sum(f.stat().st_size for f in (tmp / "cache").rglob("*") if f.is_file())
    for name, r in (("first start", first), ("second start", second)):
        print(f"{name:>13}: compile {r['compile_s']:6.1f} s | step {r['step_s']:.2f} s | "
              f"process {r['process_wall_s']:.1f} s")
    print(f"{'cache':>13}: {cached / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
