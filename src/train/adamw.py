"""AdamW as published (Loshchilov & Hutter; torch.optim.AdamW): bias-corrected moments and decoupled weight decay.

MindSpore's `nn.AdamWeightDecay` updates by m / (sqrt(v) + eps) without the 1 - beta^t corrections: with
beta2 = 0.999 its first steps move weights several times more than the learning rate says (about 3x at step 1, 6x at
step 10, still 2.7x at step 150 for beta1 0.9). This optimizer keeps its parameter groups, per-step learning-rate
tables and moment names (`adam_m.*`, `adam_v.*`, so checkpoints load either way) and applies, per parameter:

    p <- p - lr * wd * p;   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
"""
from __future__ import annotations

import numpy as np
import mindspore as ms
from mindspore import nn, ops

_adamw = ops.MultitypeFuncGraph("adamw")


@_adamw.register("Function", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                 "Tensor", "Tensor", "Tensor", "Bool")
def _adamw_update(fused, beta1, beta2, eps, lr_scale, decay_scale, lr, weight_decay, param, m, v, gradient, decay):
    """One parameter's update by MindSpore's fused AdamWeightDecay kernel (one pass over param, m, v and the
    gradient instead of a dozen element-wise ops), its missing bias correction folded into lr, eps and decay:
    lr' = lr sqrt(c2) / c1, eps' = eps sqrt(c2), decay' = decay c1 / sqrt(c2) give exactly
    p - lr (m / c1) / (sqrt(v / c2) + eps) - lr decay p."""
    rate = weight_decay * decay_scale if decay else ops.zeros((), ms.float32)
    return fused(param, m, v, lr * lr_scale, beta1, beta2, eps, rate, gradient.astype(param.dtype))


class AdamW(nn.Optimizer):
    """torch.optim.AdamW's update over MindSpore parameter groups, each with its own learning-rate table (indexed by
    the step) and weight decay, as src/train/step.py's build_optimizer makes them."""

    def __init__(self, groups, learning_rate, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(learning_rate, groups, 0.0)
        if not (self.is_group and self.is_group_lr):
            raise ValueError("AdamW takes parameter groups that each name their learning rate ('lr')")
        self.beta1 = ms.Tensor(np.float32(beta1))
        self.beta2 = ms.Tensor(np.float32(beta2))
        self.eps = ms.Tensor(np.float32(eps))
        self.moments1 = self._parameters.clone(prefix="adam_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="adam_v", init="zeros")
        self.fused = ops.AdamWeightDecay()

    def construct(self, gradients):
        weight_decay = self.get_weight_decay()
        lr = self.get_lr()  # this step's rates (read before the step counter moves)
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        t = self.global_step.astype(ms.float32)
        correction1 = 1.0 - ops.pow(self.beta1, t)
        root2 = ops.sqrt(1.0 - ops.pow(self.beta2, t))
        return self.hyper_map(ops.partial(_adamw, self.fused, self.beta1, self.beta2, self.eps * root2,
                                          root2 / correction1, correction1 / root2),
                              lr, weight_decay, self._parameters, self.moments1, self.moments2, gradients,
                              self.decay_flags)
