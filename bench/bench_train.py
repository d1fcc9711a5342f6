"""Training-step benchmark: graph compile time, step time, samples/s and model FLOPs utilisation (MFU), plus a PyNative
step and, with --reference torch, the same network in PyTorch eager (bench/torch_reference.py) for comparison.

    python bench/bench_train.py --config config/pretrain_tiny.yaml --set data.path=/tmp/tiny/prepared
    python bench/bench_train.py --config config/pretrain_demo.yaml --steps 6 --json bench_demo.json
    python bench/bench_train.py --config config/pretrain_demo.yaml --reference torch --pynative-steps 0

MFU = model FLOPs per step / step time / peak, where the peak is a float32 numpy matmul measured in the same run (the
median of samples taken before and after the timed steps) and model FLOPs count every matrix product of the enabled
losses (forward x 3 for forward + backward). The train step is the real one (`src/train/step.py`: loss scale,
clipping, AdamW) on real batches from the prepared data.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mindspore as ms  # noqa: E402

from src.commands import add_set_arg  # noqa: E402
from src.config import load_config  # noqa: E402
from src.data.masking import max_predictions  # noqa: E402
from src.data.codes import load_codes  # noqa: E402
from src.data.pipeline import open_training_data, training_data  # noqa: E402
from src.data.records import open_prepared, write_json_atomic  # noqa: E402
from src.model.opt import DataDims  # noqa: E402
from src.tasks.pretrain import LOSS_NAMES, build  # noqa: E402
from src.train.schedule import learning_rates  # noqa: E402
from src.train.step import TrainStep, build_optimizer  # noqa: E402


def matmul_rates(n: int = 1024, repeats: int = 10) -> list:
    """float32 GFLOP/s of `repeats` n x n numpy matmuls (this VM's speed drifts: sample it before and after)."""
    a, b = (np.random.default_rng(i).random((n, n), dtype=np.float32) for i in range(2))
    a @ b
    return [2 * n ** 3 / _timed(lambda: a @ b) / 1e9 for _ in range(repeats)]


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def model_flops(cfg, dims) -> float:
    """Forward + backward matmul FLOPs of one pre-training step (3 x forward)."""
    d, m = cfg.data, cfg.model
    b, h, i, v = d.batch_size, m.hidden, m.intermediate, dims.vocab_size
    lt, nv, na = d.max_text_len, d.max_regions, d.max_audio_tokens
    seq = lt + nv + na
    use = dict(zip(LOSS_NAMES, (getattr(cfg.loss, n) > 0 for n in LOSS_NAMES)))
    p = d.token_mask_prob
    st, sv, sa = max_predictions(lt - 2, p), max_predictions(nv, p), max_predictions(na, p)
    image_dim, audio_dim = dims.feature_dims["image"], dims.feature_dims["audio"]
    f = 2 * b * (nv * (image_dim + 7) * h + na * audio_dim * h)                   # vision/audio embeddings
    f += m.layers * 2 * b * seq * (4 * h * h + 2 * h * i + 2 * seq * h)            # encoder
    f += use["mlm"] * 2 * b * st * (h * h + h * v)
    f += use["mvfr"] * 2 * b * sv * h * dims.feature_dims["image"] + use["mrc"] * 2 * b * sv * h * dims.mrc_classes
    f += (use["mafr"] or use["mam_nce"]) * 2 * b * sa * h * dims.feature_dims["audio"]
    f += use["mam_nce"] * 2 * (b * sa) ** 2 * dims.feature_dims["audio"]
    if use["dtr"]:
        ld = lt - 1
        per_layer = 4 * h * h * ld + 2 * ld * ld * h + 2 * h * h * ld + 2 * h * h * seq + 2 * ld * seq * h \
            + 2 * h * i * ld
        f += m.decoder_layers * 2 * b * per_layer + 2 * b * ld * h * v
    return 3.0 * f


def read_batches(cfg, count: int):
    """(column names, `count` real pre-training batches as numpy arrays) from the demo pipeline, read once so every
    framework times the very same batches."""
    data = open_training_data(cfg.data)
    codes = load_codes(data, cfg.data.train_split, cfg.dvae) if cfg.loss.dir > 0 else None
    make_dataset, _ = training_data(data, cfg.data, "pretrain", codes=codes)
    dataset = make_dataset(0, 0)
    names = dataset.get_col_names()
    batches = []
    for batch in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        batches.append(tuple(batch))
        if len(batches) == count:
            return names, batches
    raise SystemExit(f"{cfg.data.path} gives {len(batches)} batches, fewer than the {count} to time")


def mindspore_step(cfg, batches, mode=ms.GRAPH_MODE):
    """(the real train step of `cfg`, src/train/step.py, and `batches` as MindSpore tensors)."""
    ms.set_context(mode=mode)
    ms.set_seed(0)
    loss_net, _, _ = build(cfg)
    opt = build_optimizer(loss_net.trainable_params(), cfg.train, learning_rates(cfg.train, len(batches)))
    step = TrainStep(loss_net, opt, cfg.train)
    step.set_train(True)
    return step, [tuple(ms.Tensor(a) for a in b) for b in batches]


def time_mindspore(cfg, mode, batches, jit_level: str = "") -> dict:
    """Compile (the first step) and median step time of the real train step in `mode`."""
    if jit_level:
        ms.set_context(jit_config={"jit_level": jit_level})
    step, tensors = mindspore_step(cfg, batches, mode)
    first = _timed(lambda: step(True, *tensors[0])[0].asnumpy())
    times = [_timed(lambda: step(True, *b)[0].asnumpy()) for b in tensors[1:]]
    return {"first_step_s": first, "step_s": float(np.median(times))}


def time_torch(cfg, dims, names, batches, threads: int) -> dict:
    """Median step time of the same network and batches in PyTorch eager (bench/torch_reference.py)."""
    from torch_reference import TorchStep, to_torch
    dims = dataclasses.replace(dims, codebook_size=cfg.dvae.codebook_size if cfg.loss.dir > 0 else 0)
    step = TorchStep(cfg, dims, [float(getattr(cfg.loss, n)) for n in LOSS_NAMES], threads)
    converted = [to_torch(names, b) for b in batches]
    step(converted[0])  # warm-up: allocator and thread pool
    times = [_timed(lambda: step(b)) for b in converted[1:]]
    return {"step_s": float(np.median(times))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    add_set_arg(ap)
    ap.add_argument("--steps", type=int, default=8, help="timed graph-mode steps after the compiling one")
    ap.add_argument("--pynative-steps", type=int, default=2, help="timed PyNative steps (0: skip)")
    ap.add_argument("--reference", choices=["torch"], help="also time the same network in PyTorch eager")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch's intra-op threads")
    ap.add_argument("--jit-level", default="", choices=["", "O0", "O1", "O2"], help="MindSpore's jit_level "
                    "(default: MindSpore's own)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.set)
    dims = DataDims.from_prepared(open_prepared(cfg.data.path), cfg.data)
    flops = model_flops(cfg, dims)
    names, batches = read_batches(cfg, args.steps + 1)

    rates = matmul_rates()
    graph = time_mindspore(cfg, ms.GRAPH_MODE, batches, args.jit_level)
    rates += matmul_rates()
    result = {"config": args.config, "batch_size": cfg.data.batch_size, "model_gflops_per_step": flops / 1e9,
              "compile_s": graph["first_step_s"] - graph["step_s"], "step_s": graph["step_s"],
              "samples_per_s": cfg.data.batch_size / graph["step_s"]}
    if args.reference == "torch":
        reference = time_torch(cfg, dims, names, batches, args.threads)
        rates += matmul_rates()
        result.update(torch_step_s=reference["step_s"], speed_vs_torch=reference["step_s"] / graph["step_s"])
    peak = float(np.median(rates))  # the median of all samples: single samples were seen anywhere from 100 to 215
    result.update(numpy_matmul_peak_gflops=peak, numpy_matmul_range_gflops=f"{min(rates):.0f}-{max(rates):.0f}",
                  achieved_gflops=flops / graph["step_s"] / 1e9, mfu=flops / graph["step_s"] / (peak * 1e9))
    if args.reference == "torch":
        result["torch_mfu"] = flops / reference["step_s"] / (peak * 1e9)
    if args.pynative_steps > 0:
        pynative = time_mindspore(cfg, ms.PYNATIVE_MODE, batches[:args.pynative_steps + 1])
        result["pynative_step_s"] = pynative["step_s"]
        result["graph_speedup"] = pynative["step_s"] / graph["step_s"]
    result = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
    for k, v in result.items():
        print(f"{k:>26}: {v}")
    if args.json:
        write_json_atomic(Path(args.json), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
