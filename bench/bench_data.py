"""Data benchmarks: preparation throughput (samples/s) and training-pipeline throughput (batches/s, with masking).

    python bench/bench_data.py --manifest data/demo/raw/manifest.jsonl --config config/pretrain_demo.yaml \
        --set prepare.text.vocab=data/demo/raw/vocab.txt
    python bench/bench_data.py --prepared data/demo/prepared --config config/pretrain_tiny.yaml   # pipeline only

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

from src.config import load_config  # noqa: E402
from src.data.pipeline import create_dataset, steps_per_epoch  # noqa: E402
from src.data.prepare import prepare  # noqa: E402
from src.data.records import open_prepared  # noqa: E402


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


def bench_pipeline(prepared: str, cfg, epochs: int) -> dict:
    data = open_prepared(prepared)
    steps = steps_per_epoch(data, cfg.data)
    first = time.perf_counter()
    it = create_dataset(data, cfg.data, epoch=0).create_tuple_iterator(output_numpy=True, num_epochs=1)
    next(it)
    startup = time.perf_counter() - first
    t = time.perf_counter()
    n = sum(1 for _ in it)
    for epoch in range(1, epochs):
        n += sum(1 for _ in create_dataset(data, cfg.data, epoch=epoch).create_tuple_iterator(output_numpy=True,
                                                                                             num_epochs=1))
    secs = time.perf_counter() - t
    return {"batch_size": cfg.data.batch_size, "batches": n, "steps_per_epoch": steps, "seconds": round(secs, 2),
            "batches_per_s": round(n / secs, 1), "samples_per_s": round(n * cfg.data.batch_size / secs, 1),
            "first_batch_s": round(startup, 2), "workers": cfg.data.workers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", help="benchmark preparation of this manifest")
    ap.add_argument("--prepared", help="benchmark the pipeline over this prepared dataset")
    ap.add_argument("--config", default="config/pretrain_tiny.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    results = {}
    if args.manifest:
        results["prepare"] = bench_prepare(args.manifest, cfg)
        print(f"preparation: {results['prepare']}")
    if args.prepared:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=args.prepared))
        results["pipeline"] = bench_pipeline(args.prepared, cfg, args.epochs)
        print(f"pipeline:    {results['pipeline']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
