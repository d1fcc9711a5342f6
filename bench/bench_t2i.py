"""Text-to-image speed: images per second with the vision decoder's key/value cache and without it (the decoder rerun
over the whole prefix at every code), for the same captions and seed.

    python bench/bench_t2i.py --ckpt runs/demo/pretrain [--rows 16] [--repeats 2] [--set t2i.top_k=64]

Each way runs once untimed (compiling its graphs), then `--repeats` timed times over `--rows` validation captions
in one batch; the time covers the encoder, the 64 sampling steps and the dVAE decoder. Both ways must sample the same
codes (`identical`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402

from src.commands import add_set_arg  # noqa: E402
from src.infer.items import load_items  # noqa: E402
from src.tasks.text_to_image import image_generator, input_set, load_trained  # noqa: E402
from src.train.checkpoint import load_run_config, resolve_checkpoint  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a pre-training run with DIR")
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    add_set_arg(p)
    args = p.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_run_config(args.ckpt, overrides=args.set + [f"t2i.batch_size={args.rows}"])
    model, dvae, data = load_trained(cfg, resolve_checkpoint(args.ckpt))
    items = load_items(data, cfg.data, cfg.data.eval_split)
    rows = np.flatnonzero(items.present()[:, 0])[:args.rows]
    modalities = input_set(cfg)

    def make_inputs(batch):
        return items.compose({m: rows[batch] for m in modalities})

    result = {"rows": len(rows), "codes_per_image": dvae.grid ** 2, "top_k": cfg.t2i.top_k}
    codes = {}
    for name, use_cache in (("cache", True), ("no_cache", False)):
        generate = image_generator(model, dvae, cfg, modalities, use_cache)
        generate(len(rows), make_inputs)  # compiles
        started = time.perf_counter()
        for _ in range(args.repeats):
            generate.generator.rng = np.random.default_rng(cfg.t2i.seed)  # the same samples each time and way
            codes[name], _ = generate(len(rows), make_inputs)
        seconds = (time.perf_counter() - started) / args.repeats
        result[f"{name}_seconds"] = seconds
        result[f"{name}_images_per_second"] = len(rows) / seconds
    result["speedup"] = result["no_cache_seconds"] / result["cache_seconds"]
    result["identical"] = bool(np.array_equal(codes["cache"], codes["no_cache"]))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
