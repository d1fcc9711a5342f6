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

import math

import mindspore as ms
from mindspore import nn, ops


def row_sums(x):
    """[..., n] -> [..., 1]: the sum of each row as a matrix-vector product."""
    n = x.shape[-1]
    return ops.matmul(x.reshape(-1, n), ops.ones((n, 1), x.dtype)).reshape(x.shape[:-1] + (1,))


def column_sums(x):
    """[N, n] -> [n]: the sum over rows as a vector-matrix product."""
    return ops.matmul(ops.ones((1, x.shape[0]), x.dtype), x).reshape(-1)


def spread(small, like):
    """`small` broadcast to the shape of `like` by an op of its own. MindSpore 2.10's CPU Add/Sub/Mul/Div kernels, given
    two inputs of different shapes (neither a single element), build a table of two 8-byte input indices per output
    element and keep it as long as the graph lives: 4x a float32 output, per broadcasting op of a graph (2 GB a layer
    of the demo retrieval step). BroadcastTo and then a same-shape op keep nothing (docs/performance.md, Memory).

    `small` must depend on the batch: a BroadcastTo of a Parameter alone is computed from weights only, and its output
    is kept for the graph's lifetime like a constant (a bias add per Dense would keep a [N, out] copy of its bias).
    `ops.bias_add` adds a bias; `ops.depend(parameter, like)` makes a parameter depend on the batch."""
    return ops.broadcast_to(small, like.shape)


class AddBias(nn.Cell):
    """x [N, C] + bias [C]; the bias gradient is ones @ dout."""

    def construct(self, x, bias):
        return ops.bias_add(x, bias.astype(x.dtype))  # along axis 1, the last of [N, C]; no table (see spread)

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
        # MindSpore runs a kernel as soon as its inputs exist: without the dependency on dout, the statistics and
        # xhat below (x alone decides them) would be computed in the forward pass and kept until the backward, two
        # [N, H] tensors in place of x (0.4 GB of the demo retrieval step)
        x = ops.depend(x, dout)
        h = x.shape[-1]
        centred = x - spread(row_sums(x) / h, x)
        rstd = spread(ops.rsqrt(row_sums(centred * centred) / h + self.eps), x)
        xhat = centred * rstd
        g = dout * spread(ops.depend(gamma, dout), dout)
        dx = rstd * (g - spread(row_sums(g) / h, g) - xhat * spread(row_sums(g * xhat) / h, g))
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
        return (weighted - out * spread(row_sums(weighted), out),)


SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_cdf(x):
    """Phi(x), the standard normal CDF, in multiplies (see GELU)."""
    return 0.5 + 0.5 * ops.erf(x * SQRT_HALF)


def gelu_slope(x, cdf):
    """d/dx x Phi(x) = Phi(x) + x phi(x)."""
    return cdf + x * (ops.exp(x * x * -0.5) * INV_SQRT_2PI)


class GELU(nn.Cell):
    """Exact (erf) GELU, x * Phi(x), as nn.GELU(approximate=False), with its backward Phi(x) + x * phi(x), all in
    multiplies: MindSpore 2.10 expands nn.GELU's on CPU around a Div, and the CPU Div kernel keeps a 16-byte index
    per element however its inputs are shaped (0.56 GB a layer of the demo retrieval step; see spread)."""

    def construct(self, x):
        return x * gelu_cdf(x)

    def bprop(self, x, out, dout):
        x = ops.depend(x, dout)  # the slope in the backward, not kept from the forward (see Normalize.bprop)
        return (dout * gelu_slope(x, gelu_cdf(x)),)


class GELUDense(nn.Cell):
    """GELU(u) @ weight^T + bias for u [N, in], weight [out, in], bias [out] (a Dense's parameters, passed in): the
    feed-forward block's activation and output layer in one cell, whose backward recomputes GELU(u) from u. A cell's
    backward keeps its inputs: apart, GELU(u) would be kept as the output layer's input beside u, one [N, in] tensor
    more per feed-forward block (docs/performance.md, Memory)."""

    def __init__(self):
        super().__init__()
        self.product = ops.MatMul(transpose_b=True)
        self.tn = ops.MatMul(transpose_a=True)

    def construct(self, u, weight, bias):
        return ops.bias_add(self.product(u * gelu_cdf(u), weight), bias.astype(u.dtype))

    def bprop(self, u, weight, bias, out, dout):
        u = ops.depend(u, dout)  # GELU(u) and its slope computed in the backward (see Normalize.bprop)
        cdf = gelu_cdf(u)
        du = ops.matmul(dout, ops.depend(weight, dout)) * gelu_slope(u, cdf)
        # the bias gradient in float32, the parameter's type (see AddBias.bprop); the weight enters cast by the caller
        return du, self.tn(dout, u * cdf), column_sums(dout.astype(ms.float32))


class BatchProduct(nn.Cell):
    """a @ b over the last two axes (b transposed with `transpose_b`), with a backward of products of transposed
    operands: the automatic one transposes a and b first, and MindSpore 2.10's CPU Transpose keeps an 8-byte index per
    element for as long as its graph lives."""

    def __init__(self, transpose_b: bool = False):
        super().__init__()
        self.transpose_b = transpose_b
        self.product = ops.BatchMatMul(transpose_b=transpose_b)
        self.nn = ops.BatchMatMul()
        self.tn = ops.BatchMatMul(transpose_a=True)
        self.nt = ops.BatchMatMul(transpose_b=True)

    def construct(self, a, b):
        return self.product(a, b)

    def bprop(self, a, b, out, dout):
        if self.transpose_b:  # out = a b^T: da = dout b, db = dout^T a
            return self.nn(dout, b), self.tn(dout, a)
        return self.nt(dout, b), self.tn(a, dout)  # out = a b: da = dout b^T, db = a^T dout
