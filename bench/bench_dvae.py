"""dVAE encoding speed: thumbnails of a prepared split -> codes, in images per second (what code extraction costs).

    python bench/bench_dvae.py --ckpt runs/demo/dvae [--split train] [--batch-size 64] [--repeats 3]

The thumbnails are read once; the timed part is the compiled encoder (argmax codes) over all of them, after one
warm-up pass that compiles it. Reading the thumbnails from the shards is timed separately.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402
from mindspore import nn  # noqa: E402

from src.commands import add_set_arg  # noqa: E402
from src.data.thumbnails import load_thumbnails  # noqa: E402
from src.infer.items import run_batched  # noqa: E402
from src.tasks.dvae import load_trained  # noqa: E402
from src.train.checkpoint import load_run_config, resolve_checkpoint  # noqa: E402


class Encode(nn.Cell):
    def __init__(self, dvae):
        super().__init__(auto_prefix=False)
        self.dvae = dvae

    def construct(self, images):
        return self.dvae.codes(images)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    add_set_arg(p)
    args = p.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_run_config(args.ckpt, overrides=args.set)
    model, data = load_trained(cfg, resolve_checkpoint(args.ckpt))
    started = time.perf_counter()
    _, images = load_thumbnails(data, args.split, cfg=cfg.data)
    read_seconds = time.perf_counter() - started
    cell = Encode(model)
    run_batched(cell, len(images), args.batch_size, lambda rows: (images[rows],))  # compile
    started = time.perf_counter()
    for _ in range(args.repeats):
        run_batched(cell, len(images), args.batch_size, lambda rows: (images[rows],))
    seconds = (time.perf_counter() - started) / args.repeats
    result = {"images": len(images), "batch_size": args.batch_size, "read_seconds": read_seconds,
              "encode_seconds": seconds, "images_per_second": len(images) / seconds,
              "read_images_per_second": len(images) / read_seconds}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
