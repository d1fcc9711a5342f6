"""Data benchmarks: preparation throughput (samples/s) and training-pipeline throughput (batches/s, with masking).

    python bench/bench_data.py --manifest data/demo/raw/manifest.jsonl --config config/pretrain_demo.yaml \
        --set prepare.text.vocab=data/demo/raw/vocab.txt
    python bench/bench_data.py --prepared data/demo/prepared --config config/pretrain_demo.yaml \
        --train-json bench_train.json   # pipeline only, against bench/bench_train.py's step time

Preparation runs from scratch into a temporary directory. The pipeline is read for `--epochs` epochs after one
warm-up batch; numbers go to stdout as a table and to --json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.commands import add_set_arg  # noqa: E402
from src.config import load_config  # noqa: E402
from src.data.codes import load_codes  # noqa: E402
from src.data.pipeline import open_training_data, training_data  # noqa: E402
from src.data.prepare import prepare  # noqa: E402
from src.data.records import write_json_atomic  # noqa: E402


def bench_prepare(manifest: str, cfg) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        t = time.perf_counter()
        meta = prepare(manifest, str(out / "data"), cfg.prepare, log=lambda *a: None)
        secs = time.perf_counter() - t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    n = meta["counts"]["written"]
    return {"samples": n, "seconds": round(secs, 2), "samples_per_s": round(n / secs, 1),
            "workers": cfg.prepare.workers}


def bench_pipeline(cfg, epochs: int) -> dict:
    """The pre-training pipeline as train.py builds it (masking, matching negatives, the dVAE codes with DIR)."""
    data = open_training_data(cfg.data)
    codes = load_codes(data, cfg.data.train_split, cfg.dvae) if cfg.loss.dir > 0 else None
    make_dataset, steps = training_data(data, cfg.data, "pretrain", codes=codes)
    first = time.perf_counter()
    it = make_dataset(0, 0).create_tuple_iterator(output_numpy=True, num_epochs=1)
    next(it)
    startup = time.perf_counter() - first
    t = time.perf_counter()
    n = sum(1 for _ in it)
    for epoch in range(1, epochs):
        n += sum(1 for _ in make_dataset(epoch, 0).create_tuple_iterator(output_numpy=True, num_epochs=1))
    secs = time.perf_counter() - t
    return {"batch_size": cfg.data.batch_size, "batches": n, "steps_per_epoch": steps, "seconds": round(secs, 2),
            "batches_per_s": round(n / secs, 1), "samples_per_s": round(n * cfg.data.batch_size / secs, 1),
            "first_batch_s": round(startup, 2), "workers": cfg.data.workers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", help="benchmark preparation of this manifest")
    ap.add_argument("--prepared", help="benchmark the pipeline over this prepared dataset")
    ap.add_argument("--config", default="config/pretrain_tiny.yaml")
    add_set_arg(ap, dest="overrides")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-json", default=None, help="bench_train.py --json output: print the pipeline's lead")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    results = {}
    if args.manifest:
        results["prepare"] = bench_prepare(args.manifest, cfg)
        print(f"preparation: {results['prepare']}")
    if args.prepared:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=args.prepared))
        results["pipeline"] = bench_pipeline(cfg, args.epochs)
        print(f"pipeline:    {results['pipeline']}")
        if args.train_json:  # bench/bench_train.py's results for the same recipe
            step_s = json.loads(Path(args.train_json).read_text())["step_s"]
            ahead = results["pipeline"]["batches_per_s"] * step_s
            results["pipeline"].update(train_step_s=step_s, pipeline_vs_training=round(ahead, 1))
            print(f"pipeline vs training: {ahead:.1f}x ({results['pipeline']['batches_per_s']} batches/s against "
                  f"{1 / step_s:.2f} steps/s)")
    if args.json:
        write_json_atomic(Path(args.json), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
