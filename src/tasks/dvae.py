"""Stage 1 of the vision decoder: train the dVAE on the prepared thumbnails (`task: dvae` in train.py).

Loss: the per-pixel squared error of the reconstruction from Gumbel-softmax samples of the codes, plus `kl_weight` x
KL(q || uniform prior over the codebook) per code position. With every checkpoint, `reconstructions_<step>.png` is
written next to it: validation images (top row) over their reconstructions from their argmax codes (bottom row).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from mindspore import nn, ops

from src.config import Config, DVAEConfig
from src.data.records import open_prepared
from src.data.thumbnails import load_thumbnails, thumb_size, thumbnail_training_data
from src.infer.graphs import Graph, GraphSet
from src.infer.items import run_batched
from src.infer.pictures import image_grid, write_png
from src.metrics.tables import markdown_table
from src.model.dvae import DVAE
from src.tasks.registry import Task, Training, register

class DVAELoss(nn.Cell):
    """(images [B, S, S, 3], row_weight [B]) -> (recon + kl_weight x kl, [recon, kl]): the dVAE (`model`, whose
    parameter names it keeps) with its losses."""

    def __init__(self, cfg: DVAEConfig, image_size: int):
        super().__init__(auto_prefix=False)
        self.model = DVAE(cfg, image_size)
        self.kl_weight, self.log_codebook = cfg.kl_weight, math.log(cfg.codebook_size)

    def construct(self, images, row_weight):
        logits = self.model.logits(images)
        samples = self.model.relaxed_sample(logits)
        b = images.shape[0]
        error = ((self.model.decode(samples) - images) ** 2).reshape(b, -1).mean(-1)
        log_q = ops.log_softmax(logits, -1)
        kl_rows = (ops.exp(log_q) * log_q).sum(-1).reshape(b, -1).mean(-1) + self.log_codebook
        rows = row_weight.sum() + 1e-6
        recon = (error * row_weight).sum() / rows
        kl = (kl_rows * row_weight).sum() / rows
        return recon + self.kl_weight * kl, ops.stack((recon, kl))


def build(cfg: Config, num_shards: int = 1, shard_id: int = 0):
    """(loss cell, make_dataset(epoch, start_batch), batches per epoch) for `src.train.trainer.fit`."""
    data, make_dataset, per_epoch = thumbnail_training_data(cfg.data, num_shards, shard_id)
    return DVAELoss(cfg.dvae, thumb_size(data)), make_dataset, per_epoch


def load_trained(cfg: Config, ckpt) -> tuple:
    """(DVAE in inference mode with the checkpoint's weights, the prepared data of cfg.data.path)."""
    from src.train.checkpoint import CheckpointError, load_weights
    data = open_prepared(cfg.data.path)
    size = thumb_size(data)
    model = DVAE(cfg.dvae, size)
    loaded = load_weights(model, ckpt, ("encoder.", "decoder."))
    if "image_side" in loaded and int(model.image_side.asnumpy()) != size:  # load_weights copied the saved side
        raise CheckpointError(f"{ckpt}: a dVAE for {int(model.image_side.asnumpy())}px images, but {cfg.data.path} "
                              f"has {size}px thumbnails")
    model.set_train(False)
    return model, data


class Reconstruct(nn.Cell):
    """images [B, S, S, 3] -> (their argmax codes [B, (S/8)^2], the images decoded from those codes)."""

    def __init__(self, dvae: DVAE):
        super().__init__(auto_prefix=False)
        self.dvae = dvae

    def construct(self, images):
        codes = self.dvae.codes(images)
        return codes, self.dvae.decode_codes(codes)


def reconstruct(cell: Reconstruct, images: np.ndarray, batch_size: int = 64) -> tuple:
    """Images [N, S, S, 3] -> (codes [N, (S/8)^2], reconstructions [N, S, S, 3])."""
    return run_batched(cell, len(images), min(batch_size, len(images)), lambda rows: (images[rows],))


class ReconstructionSnapshots:
    """After each checkpoint: validation images over their reconstructions, as reconstructions_<step>.png."""

    def __init__(self, cfg: Config, loss_net: DVAELoss):
        self.cell, self.images = Reconstruct(loss_net.model), None
        if cfg.dvae.samples > 0:
            data = open_prepared(cfg.data.path)
            _, self.images = load_thumbnails(data, cfg.data.eval_split, limit=cfg.dvae.samples, cfg=cfg.data)

    def __call__(self, out_dir: Path, step: int) -> None:
        if self.images is None:
            return
        _, rebuilt = reconstruct(self.cell, self.images)  # no dropout or normalisation: train mode changes nothing
        write_png(Path(out_dir) / f"reconstructions_{step:08d}.png", image_grid([self.images, rebuilt]))


def evaluate_reconstruction(cell, data, cfg: Config, split: str, limit: int = 0, out_dir: Path = None,
                            batch_size: int = 64) -> dict:
    """PSNR of the reconstructions (from argmax codes) of `split`'s thumbnails against the per-image mean-colour
    baseline, and codebook usage, with `cell` (a Reconstruct); with `out_dir`, a grid of the first images over their
    reconstructions."""
    from src.metrics.image import code_usage, mean_colour, psnr
    index, images = load_thumbnails(data, split, limit, cfg=cfg.data)
    codes, rebuilt = reconstruct(cell, images, batch_size)
    ours, baseline = psnr(rebuilt, images), psnr(mean_colour(images), images)
    report = {"items": len(images), "psnr": float(np.mean(ours)), "baseline_psnr": float(np.mean(baseline)),
              "psnr_gain": float(np.mean(ours) - np.mean(baseline)), **code_usage(codes, cfg.dvae.codebook_size)}
    if out_dir is not None:
        shown = min(len(images), 16)
        sheet = Path(out_dir) / f"reconstructions_{split}.png"
        write_png(sheet, image_grid([images[:shown], rebuilt[:shown]]))
        report["sheet"] = str(sheet)
    return report


def reconstruction_table(report: dict) -> list:
    rows = [("dVAE (argmax codes)", f"{report['psnr']:.2f}"),
            ("per-image mean colour", f"{report['baseline_psnr']:.2f}"), ("gain", f"{report['psnr_gain']:+.2f}")]
    return markdown_table(("reconstruction", "PSNR (dB)"), rows) + [
        f"codes used: {report['codes_used']} of {report['codebook_size']} (perplexity {report['perplexity']:.1f})"]


def dvae_graphs(cfg: Config, ckpt) -> GraphSet:
    """`reconstruct`: images -> (argmax codes, the images decoded from them)."""
    model, _ = load_trained(cfg, ckpt)
    return GraphSet({"reconstruct": Graph(Reconstruct(model), ["images"], ["codes", "reconstructions"], None)})


def evaluate_run(run) -> list:
    """eval.py --task dvae: reconstruction PSNR against the mean colour, a grid beside the checkpoint."""
    run.report.update(evaluate_reconstruction(run.graphs["reconstruct"], run.data(), run.cfg, run.split,
                                              run.args.limit, out_dir=run.out_dir))
    return reconstruction_table(run.report)


register(Task("dvae", __name__, training=Training(build, ("recon", "kl"), after_checkpoint=ReconstructionSnapshots),
              graphs=dvae_graphs, exportable=False, evaluate=evaluate_run,
              help="reconstruction PSNR vs the mean colour, codebook usage"))
