"""The one train step: loss scaling, gradient accumulation, global-norm clipping and the optimizer in one cell.

MindSpore's `nn.TrainOneStepWithLossScaleCell` checks overflow with an NPU-only status op and fails on CPU; this cell
checks the gradients themselves (their global norm is finite or not), which works on CPU, GPU and Ascend alike. The
loss-scale state (scale and the count of finite steps) lives in Parameters, so it is saved in checkpoints.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import ConfigError, TrainConfig
from src.model.dropout import number_dropouts
from src.train.adamw import AdamW
from src.train.distributed import MeanOverRanks, data_parallel_size
from src.train.precision import mixed_precision

LOSS_SCALES = ("dynamic", "static", "none")


def no_decay(name: str) -> bool:
    """Biases, LayerNorm parameters (BERT's practice) and a learnt temperature (CLIP's) are not weight-decayed."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf in ("bias", "beta", "gamma", "logit_scale") or "norm" in name.lower()


def trainable(net: nn.Cell, freeze=()) -> list:
    """The parameters of `net` the optimizer steps: all trainable ones but those whose name starts with a prefix in
    `freeze`. Frozen ones get requires_grad False, so the backward pass through parts that feed only frozen weights
    (a frozen encoder under a trained decoder) is not built at all."""
    params = net.trainable_params()
    for prefix in freeze:
        if not any(p.name.startswith(prefix) for p in params):
            names = sorted({".".join(p.name.split(".")[:2]) + "." for p in params})
            raise ConfigError(f"train.freeze: no trainable parameter starts with '{prefix}' (they start with "
                              f"{', '.join(names[:12])}...)")
    kept = []
    for p in params:
        if any(p.name.startswith(prefix) for prefix in freeze):
            p.requires_grad = False
        else:
            kept.append(p)
    return kept


def build_optimizer(params, cfg: TrainConfig, learning_rates: np.ndarray, initialised=None) -> nn.Optimizer:
    """AdamW (bias-corrected, src/train/adamw.py) over `params` following the per-step `learning_rates`; no decay on
    biases and LayerNorm. When the names of the parameters that came from `model.init_from` are given, the others
    (new heads) learn at learning_rates x cfg.new_lr_scale."""
    params = list(params)
    fresh = (lambda p: p.name not in initialised) if initialised and cfg.new_lr_scale != 1.0 else (lambda p: False)
    groups = []
    for is_fresh in (False, True):
        rates = ms.Tensor(learning_rates * (cfg.new_lr_scale if is_fresh else 1.0), ms.float32)
        for decayed in (True, False):
            members = [p for p in params if fresh(p) == is_fresh and no_decay(p.name) != decayed]
            if members:
                groups.append({"params": members, "weight_decay": cfg.weight_decay if decayed else 0.0,
                               "lr": rates})
    groups.append({"order_params": params})
    beta1, beta2 = cfg.betas
    return AdamW(groups, learning_rate=ms.Tensor(learning_rates), beta1=beta1, beta2=beta2, eps=cfg.eps)


# Per-gradient functions for `HyperMap`: a Python comprehension over ~100 gradients unrolls into the graph and
# doubles compile time; HyperMap compiles each function once.
_add = ops.MultitypeFuncGraph("add")
_clear = ops.MultitypeFuncGraph("clear")
_square_sum = ops.MultitypeFuncGraph("square_sum")
_times = ops.MultitypeFuncGraph("times")


@_add.register("Tensor", "Tensor")
def _add_tensors(a, b):
    return a + b


@_clear.register("Tensor")
def _clear_tensor(a):
    return ops.assign(a, ops.zeros_like(a))


_l2_loss = ops.L2Loss()


@_square_sum.register("Tensor")
def _square_sum_tensor(g):
    # L2Loss (sum(g^2) / 2) is one pass; g * g then sum was two, and a 12M-row word table's gradient twice over
    return 2.0 * _l2_loss(g.astype(ms.float32))  # in float32: fp16 squares overflow long before the gradients do


@_times.register("Tensor", "Tensor")
def _times_tensor(factor, g):
    return g * factor.astype(g.dtype)


class TrainStep(nn.Cell):
    """`step(apply, *batch)` -> (total loss, [each loss], loss scale used, gradient global norm, overflow).

    With `accumulation_steps` N > 1 the caller runs N-1 micro-batches with `apply=False` (their gradients are summed
    into buffers) and the N-th with `apply=True` (the optimizer step). `apply` is a Python bool, so each value compiles
    to its own graph with no control flow at run time.
    """

    def __init__(self, loss_net: nn.Cell, optimizer: nn.Optimizer, cfg: TrainConfig):
        super().__init__(auto_prefix=False)
        if cfg.loss_scale not in LOSS_SCALES:
            raise ConfigError(f"train.loss_scale must be one of {', '.join(LOSS_SCALES)}, got '{cfg.loss_scale}'")
        if cfg.accumulation_steps < 1:
            raise ConfigError(f"train.accumulation_steps must be >= 1, got {cfg.accumulation_steps}")
        self.loss_net, self.optimizer = loss_net, optimizer
        number_dropouts(loss_net)  # dropout masks by the cell's place in the network, not the process's history
        self.weights = optimizer.parameters
        self.map = ops.HyperMap()
        self.grad_fn = ms.value_and_grad(self.scaled_loss, None, self.weights, has_aux=True)
        self.micro_batches = cfg.accumulation_steps
        self.clip = cfg.grad_clip
        self.dynamic = cfg.loss_scale == "dynamic"
        self.factor, self.window = cfg.loss_scale_factor, cfg.loss_scale_window
        initial = cfg.init_loss_scale if cfg.loss_scale != "none" else 1.0
        self.loss_scale = ms.Parameter(ms.Tensor(initial, ms.float32), name="loss_scale", requires_grad=False)
        self.finite_steps = ms.Parameter(ms.Tensor(0, ms.int32), name="finite_steps", requires_grad=False)
        self.accumulated = self.weights.clone(prefix="accumulated", init="zeros") if self.micro_batches > 1 else None
        # data parallel: gradients (and the logged losses) are averaged over the ranks once per optimizer step
        replicas = data_parallel_size()
        self.reducer = nn.DistributedGradReducer(self.weights, mean=True, degree=replicas) if replicas > 1 else None
        self.mean_over_ranks = MeanOverRanks(replicas) if replicas > 1 else None

    def scaled_loss(self, scale, *batch):
        """The loss the gradients are taken of: total x loss scale / micro-batches (one forward pass per batch)."""
        total, losses = self.loss_net(*batch)
        return total * scale / self.micro_batches, total, losses

    def construct(self, apply, *batch):
        scale = self.loss_scale.value()
        (_, total, losses), grads = self.grad_fn(scale, *batch)
        if self.micro_batches > 1:
            grads = self.map(_add, grads, self.accumulated)
            if not apply:
                self.map(ops.assign, self.accumulated, grads)
                return total, losses, scale, ops.zeros((), ms.float32), ops.zeros((), ms.bool_)
            self.map(_clear, self.accumulated)
        if self.reducer is not None:
            grads = self.reducer(grads)
            total, losses = self.mean_over_ranks(total), self.mean_over_ranks(losses)
        # One pass over the gradients: the global norm of the scaled gradients gives overflow (inf/nan anywhere makes
        # it non-finite), the true norm (divide by the scale) and the clipping factor, applied with the unscaling.
        scaled_norm = ops.sqrt(ops.addn(self.map(_square_sum, grads)))
        finite = ops.isfinite(scaled_norm)
        norm = scaled_norm / scale
        factor = 1.0 / scale
        if self.clip > 0:
            factor = factor * ops.minimum(self.clip / (norm + 1e-6), 1.0)
        grads = self.map(ops.partial(_times, factor), grads)
        self.update_scale(finite)
        if finite:
            self.optimizer(grads)
        return total, losses, scale, norm, ops.logical_not(finite)

    def update_scale(self, finite):
        """Dynamic scaling: divide by `factor` on overflow (never below 1), multiply after `window` finite steps."""
        if not self.dynamic:
            return
        scale = self.loss_scale.value()
        count = ops.select(finite, self.finite_steps + 1, ops.zeros_like(self.finite_steps))
        grow = ops.logical_and(finite, count >= self.window)
        shrunk = ops.maximum(scale / self.factor, 1.0)
        ops.assign(self.loss_scale, ops.select(finite, ops.select(grow, scale * self.factor, scale), shrunk))
        ops.assign(self.finite_steps, ops.select(grow, ops.zeros_like(count), count))


def train_step(loss_net: nn.Cell, cfg: TrainConfig, learning_rates: np.ndarray) -> TrainStep:
    """The train step of `loss_net` under `cfg`: AdamW over its parameters but the frozen ones, new heads (those
    model.init_from did not provide, `loss_net.initialised`) at lr x new_lr_scale; in training mode, at
    cfg.amp_level's precision (set on `loss_net` in place)."""
    mixed_precision(loss_net, cfg.amp_level)
    optimizer = build_optimizer(trainable(loss_net, cfg.freeze), cfg, learning_rates,
                                getattr(loss_net, "initialised", None))
    step = TrainStep(loss_net, optimizer, cfg)
    step.set_train(True)
    return step
