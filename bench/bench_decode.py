"""Decoding speed with the key/value cache against rerunning the decoder over the whole prefix, greedy and beam.

    python bench/bench_decode.py --ckpt runs/demo/caption --lengths 16 32 --rows 32

Every sequence is decoded to exactly the given length (the end piece is made impossible, so both methods do the same
number of steps); tokens per second count the pieces of the returned sequences, once for the whole call (the encoder
pass included) and once for the decoding loop alone (the encoder pass, timed on its own, left out). Both methods run
the same compiled batch on the same inputs (image+audio of the first `--rows` items of the split) and must return
identical pieces. Times exclude graph compilation (each configuration is warmed up once first).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402

from src.data.records import write_json_atomic  # noqa: E402
from src.infer.generate import Generator, text_symbols  # noqa: E402
from src.infer.items import load_items  # noqa: E402
from src.model.layers import NEG  # noqa: E402
from src.tasks.caption import load_trained  # noqa: E402
from src.train.checkpoint import load_run_config, resolve_checkpoint  # noqa: E402

MODALITIES = ("image", "audio")


def timed(generator, inputs, repeats: int):
    """(pieces, seconds per call, seconds per call of the encoder pass that starts it)."""
    generator(inputs)  # compile
    started = time.perf_counter()
    for _ in range(repeats):
        out = generator(inputs)
    seconds = (time.perf_counter() - started) / repeats
    tensors = [ms.Tensor(x) for x in inputs] + [ms.Tensor(np.repeat(np.arange(len(inputs[0])), generator.width),
                                                          ms.int32)]
    started = time.perf_counter()
    for _ in range(repeats):
        ms.mutable(generator.start(*tensors))[-1].asnumpy()
    return out, seconds, (time.perf_counter() - started) / repeats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a caption checkpoint or run directory")
    p.add_argument("--config", default=None)
    p.add_argument("--split", default="val")
    p.add_argument("--rows", type=int, default=32, help="sequences decoded together")
    p.add_argument("--lengths", type=int, nargs="+", default=[16, 32])
    p.add_argument("--strategies", nargs="+", default=["greedy", "beam"])
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = load_run_config(args.ckpt, args.config)
    model, data = load_trained(cfg, resolve_checkpoint(args.ckpt))
    specials = data.meta["text"]["special_ids"]
    head = model.dtr_head  # no sequence ends early: both methods decode every step
    bias, sep = (head.bias, specials["[SEP]"]) if head.output_ids is None else \
        (head.class_bias, int(head.class_index.asnumpy()[specials["[SEP]"]]))
    values = bias.asnumpy()
    if sep < len(values):
        values[sep] = NEG
    bias.set_data(ms.Tensor(values))
    items = load_items(data, cfg.data, args.split, limit=args.rows)
    rows = np.arange(args.rows) % len(items)
    inputs = items.compose({m: rows for m in MODALITIES})

    results = []
    for strategy in args.strategies:
        for length in args.lengths:
            gen_cfg = dataclasses.replace(cfg.generate, strategy=strategy, max_len=length + 1, batch_size=args.rows,
                                          beam_size=args.beam_size)
            row = {"strategy": strategy, "length": length, "rows": args.rows}
            outputs = {}
            for name, use_cache in (("cache", True), ("no_cache", False)):
                generator = Generator(model, MODALITIES, gen_cfg,
                                      text_symbols(specials, data.meta["text"]["vocab_size"]),
                                      cfg.model.max_positions, use_cache)
                outputs[name], seconds, encoder_seconds = timed(generator, inputs, args.repeats)
                pieces = sum(len(s) for s in outputs[name])
                row[f"{name}_seconds"] = seconds
                row[f"{name}_encoder_seconds"] = encoder_seconds
                row[f"{name}_tokens_per_second"] = pieces / seconds
                row[f"{name}_decoder_tokens_per_second"] = pieces / (seconds - encoder_seconds)
            row["identical"] = outputs["cache"] == outputs["no_cache"]
            row["speedup"] = row["no_cache_seconds"] / row["cache_seconds"]
            row["decoder_speedup"] = row["cache_decoder_tokens_per_second"] / row["no_cache_decoder_tokens_per_second"]
            results.append(row)
            print(f"{strategy:<7} length {length:>3}: cache {row['cache_tokens_per_second']:7.1f} tok/s, "
                  f"no cache {row['no_cache_tokens_per_second']:7.1f} tok/s: {row['speedup']:.2f}x | decoder only "
                  f"(the {row['cache_encoder_seconds']:.2f} s encoder pass left out): "
                  f"{row['cache_decoder_tokens_per_second']:7.1f} vs {row['no_cache_decoder_tokens_per_second']:7.1f}"
                  f" tok/s: {row['decoder_speedup']:.2f}x | identical {row['identical']}", flush=True)
    if args.json:
        write_json_atomic(Path(args.json), results)
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
