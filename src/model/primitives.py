"""Drop-in Dense, LayerNorm and Softmax whose backward passes take their sums as matrix products.

MindSpore 2.10's CPU kernels for the reductions inside these gradients are slow next to its matmul (measured on
2 cores): BiasAddGrad over [2192, 1536] 8.6 ms where ones @ x takes 0.4 ms; LayerNorm forward + backward over
[2192, 384] 14 ms where an element-wise multiply takes 0.3 ms; the row sum of the softmax backward 10 ms where a
matrix-vector product takes 6. The cells below keep MindSpore's parameters and names (`weight`, `bias`, `gamma`,
`beta`: checkpoints and the MiniLM converter see no difference) and write out the backward of the parameter-free part
as a cell with `bprop` (a cell's custom backward gives gradients for its inputs, so the parameters enter as inputs).

Mixed precision (train.amp_level O2, `src/train/precision.py`): cells whose class sets `keep_float32` run in float32
inside a float16 network (their inputs are cast up, their output stays float32): LayerNorm (its statistics and
backward) and Softmax. Dense runs in the network's precision: its matrix products are where float16 pays.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops


def row_sums(x):
    """[..., n] -> [..., 1]: the sum of each row as a matrix-vector product."""
    n = x.shape[-1]
    return ops.matmul(x.reshape(-1, n), ops.ones((n, 1), x.dtype)).reshape(x.shape[:-1] + (1,))


def column_sums(x):
    """[N, n] -> [n]: the sum over rows as a vector-matrix product."""
    return ops.matmul(ops.ones((1, x.shape[0]), x.dtype), x).reshape(-1)


class AddBias(nn.Cell):
    """x [N, C] + bias [C]; the bias gradient is ones @ dout."""

    def construct(self, x, bias):
        return x + bias

    def bprop(self, x, bias, out, dout):
        # summed in float32, the parameter's type: under O2 the bias enters as float16, and the gradient a custom
        # backward gives it is not cast back to the parameter's type
        return dout, column_sums(dout.astype(ms.float32))


class Dense(nn.Dense):
    """nn.Dense (weight [out, in], bias [out]) for 2-D or higher inputs, with AddBias's backward."""

    def __init__(self, in_channels: int, out_channels: int, **options):
        super().__init__(in_channels, out_channels, **options)  # weight_init, bias_init, has_bias as nn.Dense
        self.add_bias = AddBias()

    def construct(self, x):
        shape = x.shape
        y = self.matmul(x.reshape(-1, shape[-1]), self.weight)
        if self.has_bias:
            y = self.add_bias(y, self.bias)
        return y.reshape(shape[:-1] + (y.shape[-1],))


class Normalize(nn.Cell):
    """LayerNorm over the last axis of x [N, H] with gamma, beta [H]: MindSpore's kernel forward; backward from
    statistics recomputed as matrix-vector products (cheaper than keeping them), the rest element-wise."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps
        self.layer_norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)

    def construct(self, x, gamma, beta):
        return self.layer_norm(x, gamma, beta)[0]

    def bprop(self, x, gamma, beta, out, dout):
        h = x.shape[-1]
        centred = x - row_sums(x) / h
        rstd = ops.rsqrt(row_sums(centred * centred) / h + self.eps)
        xhat = centred * rstd
        g = dout * gamma
        dx = rstd * (g - row_sums(g) / h - xhat * (row_sums(g * xhat) / h))
        return dx, column_sums(dout * xhat), column_sums(dout)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the last axis (gamma, beta [H]) with Normalize's backward; float32 under mixed precision."""
    keep_float32 = True

    def __init__(self, hidden: int, eps: float):
        super().__init__((hidden,), epsilon=eps)
        self.normalize = Normalize(eps)

    def construct(self, x):
        shape = x.shape
        return self.normalize(x.reshape(-1, shape[-1]), self.gamma, self.beta).reshape(shape)


class Softmax(nn.Cell):
    """Softmax over the last axis; backward y (dy - sum(dy y)); float32 under mixed precision (its output is cast to
    the values' precision by the caller)."""
    keep_float32 = True

    def construct(self, x):
        return ops.softmax(x, axis=-1)

    def bprop(self, x, out, dout):
        weighted = dout * out
        return (weighted - out * row_sums(weighted),)
