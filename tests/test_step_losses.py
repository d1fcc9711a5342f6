"""The optimised train step (fused AdamW, L2Loss norms, written-out Dense/LayerNorm/Softmax gradients, multiply
dropout) gives the losses the plain step gave: eight steps of the tiny pre-training with dropout, AdamW, clipping and
loss scaling, against the numbers recorded at commit 78bb15a, before any of those changes."""
from __future__ import annotations

import mindspore as ms
import numpy as np

from src.tasks.pretrain import build
from src.train.schedule import learning_rates
from src.train.step import train_step
from tests.conftest import tiny_config

# total loss and grad norm per step at commit 78bb15a (same fixture, seed, config)
RECORDED_LOSS = [28.063758850097656, 29.65380859375, 27.431888580322266, 27.703746795654297, 27.4090576171875,
                 29.26361083984375, 28.36726951599121, 26.729625701904297]
RECORDED_NORM = [21.36237144470215, 17.134933471679688, 20.4893856048584, 26.30023765563965, 20.76824188232422,
                 16.76767349243164, 14.726887702941895, 18.766870498657227]
TOLERANCE = 2e-4  # relative: float32 sums taken in another order


def tiny_run(prepared, steps: int = 8, overrides=()):
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = tiny_config(f"data.path={prepared}", "model.dropout=0.1", "train.lr=0.003", "train.warmup_steps=2",
                      "train.grad_clip=1.0", *overrides)
    ms.set_seed(cfg.train.seed)
    loss_net, make_dataset, _ = build(cfg)
    step = train_step(loss_net, cfg.train, learning_rates(cfg.train, steps))
    losses, norms = [], []
    for epoch in range(steps):
        for batch in make_dataset(epoch, 0).create_tuple_iterator(num_epochs=1):
            total, _, _, norm, overflow = step(True, *batch)
            assert not overflow.asnumpy(), "a skipped step compares nothing"
            losses.append(float(total.asnumpy()))
            norms.append(float(norm.asnumpy()))
            if len(losses) == steps:
                return np.array(losses), np.array(norms)
    raise AssertionError("the tiny set gave fewer batches than steps")


def test_optimised_step_gives_the_recorded_losses(prepared):
    losses, norms = tiny_run(prepared)
    np.testing.assert_allclose(losses, RECORDED_LOSS, rtol=TOLERANCE)
    np.testing.assert_allclose(norms, RECORDED_NORM, rtol=TOLERANCE)
    assert losses[-1] < losses[0]
