"""Peak resident memory of each stage of a recipe set: every stage runs as its own process (train.py, eval.py, the dVAE
code extraction), and its peak is what `/usr/bin/time -v` reports ("Maximum resident set size", the child's
ru_maxrss from os.wait4), beside the peak of its whole process group sampled every 0.2 s.

    python bench/bench_memory.py                         # the demo recipes' model sizes on a generated set
    python bench/bench_memory.py --shape tiny            # the tiny recipes, in a few minutes
    python bench/bench_memory.py --stages retrieval --items 600 --steps 12 --json memory.json

The data is generated (tests/conftest.py's manifest: two-tone images, tones as audio, short captions) and prepared
with the demo's feature widths and lengths (`--shape demo`: 7x7 regions of 1200-d grid features, 64x64 thumbnails,
384-d audio tokens, 24 text positions, as EfficientNet-Lite0 / Whisper tiny.en give the demo) or the tiny recipe's
(`--shape tiny`). The stages follow scripts/run_demo.sh: dvae, dvae_codes (its codes into the prepared set),
pretrain (with DIR over them), retrieval (its warm start included), retrieval_eval, caption, vqa (on a generated
VQA v2-format set). Each stage trains `--steps` steps; fine-tuning starts from the pre-training run. A stage above
`--limit-gb` is killed (its line says so). Compile caches are off (OPT_COMPILE_CACHE=off): a first start compiles,
and compilation is part of the peak.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("dvae", "dvae_codes", "pretrain", "retrieval", "retrieval_eval", "caption", "vqa")
# prepare settings giving the demo's input shapes without its pretrained extractors (config/pretrain_demo.yaml:
# 49 regions of 1280-d EfficientNet features, 64 audio tokens of 384-d Whisper frames, text cut at 24 positions)
DEMO_PREPARE = ["prepare.image.grid=7", "prepare.image.patch_pixels=20", "prepare.image.thumb_size=64",
                "prepare.audio.n_mels=96", "prepare.audio.frames_per_token=4", "prepare.text.max_tokens=22"]


def group_rss(pgid: int) -> int:
    """Summed resident bytes of the processes in process group `pgid`."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), 0)
        except (OSError, ProcessLookupError):
            continue
    return total


def measure(cmd, log: Path, limit_bytes: float, env: dict) -> dict:
    """Run `cmd` in its own process group (output to `log`); its ru_maxrss, the sampled peak of its group, wall time,
    exit status; killed (the whole group) above `limit_bytes`."""
    started = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    peak, killed, done = 0, False, threading.Event()

    def watch():
        nonlocal peak, killed
        while not done.is_set():
            rss = group_rss(child.pid)
            peak = max(peak, rss)
            if rss > limit_bytes and not killed:
                killed = True
                os.killpg(child.pid, signal.SIGKILL)
            done.wait(0.2)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(child.pid, 0)
    done.set()
    watcher.join()
    return {"max_rss_gb": usage.ru_maxrss * 1024 / 1e9, "group_peak_gb": peak / 1e9,
            "seconds": time.perf_counter() - started, "exit": os.waitstatus_to_exitcode(status), "killed": killed}


def make_data(work: Path, shape: str, items: int) -> dict:
    """The generated set prepared in work/prepared (1 item in 8 in val), and a VQA v2-format set in work/vqa."""
    from src.config import load_config
    from src.data.prepare import prepare
    from tests.conftest import make_manifest
    from tests.test_vqa_data import make_vqa
    overrides = DEMO_PREPARE if shape == "demo" else []
    cfg = load_config(str(ROOT / "config" / "pretrain_tiny.yaml"), overrides).prepare
    quiet = dict(log=lambda *a: None)
    if not (work / "prepared" / "meta.json").exists():
        manifest = make_manifest(work / "raw", n=items, val=max(2, items // 8))
        prepare(str(manifest), str(work / "prepared"), cfg, **quiet)
    vqa = work / "vqa"
    if not (vqa / "train" / "meta.json").exists():  # prepared like the pre-training set, as fine-tuning requires
        files = make_vqa(vqa, images=max(24, items // 10), val_images=2)  # answers given 9 times: a vocabulary
        prepare(str(files["train"][0]), str(vqa / "train"), cfg, "vqa", annotations=str(files["train"][1]),
                like=str(work / "prepared"), image_dir=str(vqa / "images"), audio_dir=str(vqa / "audio"), **quiet)
    return {"prepared": work / "prepared", "vqa": vqa / "train"}


def stage_commands(shape: str, data: dict, runs: Path, steps: int) -> dict:
    """Stage name -> command line, in STAGES order (later stages read earlier stages' runs)."""
    py = [sys.executable]

    def train(recipe, out, *sets):
        return py + ["train.py", "--config", f"config/{recipe}_{shape}.yaml", "--set",
                     f"train.output_dir={runs / out}", f"train.max_steps={steps}", "train.max_minutes=0",
                     "train.save_every=1000", *sets]
    prepared, pretrained = f"data.path={data['prepared']}", f"model.init_from={runs / 'pretrain'}"
    dvae_sets = ["dvae.codebook_size=512" if shape == "demo" else "dvae.codebook_size=16"]  # the dvae recipe's
    return {
        "dvae": train("dvae", "dvae", prepared),
        "dvae_codes": py + ["-m", "src.tasks.dvae_codes", "--dvae", str(runs / "dvae"), "--data",
                            str(data["prepared"])],
        "pretrain": train("pretrain", "pretrain", prepared, "loss.dir=1.0", *dvae_sets),
        "retrieval": train("retrieval", "retrieval", prepared, pretrained),
        "retrieval_eval": py + ["eval.py", "--task", "retrieval", "--ckpt", str(runs / "retrieval"),
                                "--out", str(runs / "retrieval_eval.json")],
        "caption": train("caption", "caption", prepared, pretrained),
        "vqa": train("vqa", "vqa", f"data.path={data['vqa']}", pretrained),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=("demo", "tiny"), default="demo", help="the recipes' model sizes: *_demo.yaml "
                   "or *_tiny.yaml (and the matching data shapes)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)} (a stage "
                   "reads the runs of the stages before it: retrieval, caption and vqa need pretrain's)")
    p.add_argument("--items", type=int, default=320, help="generated samples (1 in 8 in val)")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps of each training stage (a peak can come "
                   "late: docs/performance.md, Memory)")
    p.add_argument("--work", default="/tmp/bench_memory", help="generated data and runs (data is reused)")
    p.add_argument("--limit-gb", type=float, default=12.0, help="kill a stage whose process group exceeds this")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    work = Path(args.work) / f"{args.shape}_{args.items}"
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    print(f"data: {args.items} generated items, {args.shape} shapes, in {work} ...", flush=True)
    data = make_data(work, args.shape, args.items)
    env = dict(os.environ, OPT_COMPILE_CACHE="off", PYTHONPATH=str(ROOT))
    commands = stage_commands(args.shape, data, runs, args.steps)
    results = []
    print(f"{'stage':16s} {'peak RSS (time -v)':>19s} {'group peak':>11s} {'seconds':>8s}  exit", flush=True)
    for stage in stages:
        r = measure(commands[stage], runs / f"{stage}.log", args.limit_gb * 1e9, env)
        r.update(stage=stage, command=" ".join(commands[stage]))
        results.append(r)
        note = f"KILLED above {args.limit_gb:g} GB" if r["killed"] else (
            "ok" if r["exit"] == 0 else f"failed ({r['exit']}): see {runs / (stage + '.log')}")
        print(f"{stage:16s} {r['max_rss_gb']:16.2f} GB {r['group_peak_gb']:8.2f} GB {r['seconds']:8.0f}  {note}",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": args.shape, "items": args.items, "steps": args.steps,
                                               "stages": results}, indent=1))
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
