"""Train a model: `python train.py --config config/pretrain_demo.yaml [--set key=value ...] [--resume [PATH]]`, or
fine-tune a pre-trained run: `python train.py --finetune TASK PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]`.
`python train.py --config RECIPE [--set ...] --show KEY` prints one value of the config and trains nothing.

The config's `task` says what is trained; every task shares the loop in `src/train/trainer.py` (schedule, loss
scaling, accumulation, clipping, logging, atomic checkpoints, exact resume). Started by a launcher in `scripts/`
(msrun or an Ascend rank table), it trains data parallel: one replica per process, `data.batch_size` rows each.
"""
from __future__ import annotations

import argparse
import os
import sys

import mindspore as ms

from src.cli import entry_point
from src.commands import add_set_arg
from src.compile_cache import enable_compile_cache
from src.config import load_config, value_at
from src.data.lineage import check_prepared_like, save_settings
from src.data.records import open_prepared
from src.tasks import registry
from src.train.distributed import init_data_parallel
from src.train.finetune import finetune_from_arguments
from src.train.trainer import fit, set_mode


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a recipe in config/")
    p.add_argument("--finetune", nargs="+", metavar="ARG",
                   help="TASK PRETRAINED DATA OUT [RECIPE.yaml] [key=value ...]: fine-tune a pre-trained run on "
                        "prepared data with a task's recipe (default config/TASK_finetune.yaml), the model's shape "
                        "from PRETRAINED; a rerun resumes OUT (scripts/run_standalone_train_retrieval.sh)")
    add_set_arg(p)
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue from a checkpoint (default: the newest in train.output_dir)")
    p.add_argument("--show", default=None, metavar="KEY", help="print one value of the config (a dotted key such as "
                                                               "train.output_dir, or a section) and train nothing")
    args = p.parse_args(argv)
    if not args.config and not args.finetune:
        p.error("--config RECIPE (or --finetune ...) is required")
    return args


def train(args) -> None:
    if args.show:
        print(value_at(load_config(args.config, args.set), args.show, args.config))
        return
    if args.finetune:
        cfg, args.resume = finetune_from_arguments(args.finetune), "auto"
    else:
        cfg = load_config(args.config, args.set)
    task = registry.training(cfg.task, where=args.config or "--finetune")
    set_mode(cfg.train.mode, cfg.train.device)
    ranks = init_data_parallel()
    enable_compile_cache("train", cfg, {"resume": args.resume is not None}, rank=ranks.rank)
    if ranks.distributed:  # the launchers find a dead rank's log by this line
        print(f"rank {ranks.rank} of {ranks.size}: process {os.getpid()}", flush=True)
    data = open_prepared(cfg.data.path)
    check_prepared_like(data, cfg.model.init_from)  # before anything is built: one line naming the fix
    if ranks.main:  # the run carries how its data was prepared (prepare_data.sh --like RUN)
        save_settings(data, cfg.train.output_dir)
    ms.set_seed(cfg.train.seed)  # the same on every rank: the replicas start from identical parameters
    loss_net, make_dataset, per_epoch = task.build(cfg, ranks.size, ranks.rank)
    hook = task.after_checkpoint(cfg, loss_net) if task.after_checkpoint and ranks.main else None
    warm = task.warm_start(cfg, loss_net) if task.warm_start else None
    fit(cfg, loss_net, task.loss_names, make_dataset, per_epoch, resume=args.resume, ranks=ranks,
        after_checkpoint=hook, warm_start=warm)


main = entry_point(parse_args, train)


if __name__ == "__main__":
    sys.exit(main())
