"""src/model/primitives.py: the same outputs and gradients (inputs and parameters) as MindSpore's own cells, in graph
mode, to float32 rounding."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.model.layers import FeedForward
from src.model.primitives import Dense, LayerNorm, Softmax


class Graded(nn.Cell):
    """(output, gradient of sum(output * weights) with respect to the input and to every parameter)."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell
        self.grad = ops.GradOperation(get_all=True, get_by_list=True)
        self.params = ms.ParameterTuple(cell.trainable_params())

    def loss(self, x, w):
        return (self.cell(x) * w).sum()

    def construct(self, x, w):
        return self.cell(x), self.grad(self.loss, self.params)(x, w)


def outputs_and_gradients(cell, x, w):
    ms.set_context(mode=ms.GRAPH_MODE)
    out, (inputs, params) = Graded(cell)(ms.Tensor(x), ms.Tensor(w))
    return [out.asnumpy(), inputs[0].asnumpy()] + [p.asnumpy() for p in params]


def same_parameters(ours, reference):
    for a, b in zip(ours.get_parameters(), reference.get_parameters()):
        assert a.name.rsplit(".", 1)[-1] == b.name.rsplit(".", 1)[-1]  # checkpoint names kept
        a.set_data(ms.Tensor(np.random.default_rng(len(a.name)).standard_normal(a.shape).astype(np.float32)))
        b.set_data(a.data.copy())


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
def test_dense_matches_nn_dense(shape):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape[:-1] + (4,)).astype(np.float32)
    ours, reference = Dense(5, 4), nn.Dense(5, 4)
    same_parameters(ours, reference)
    for a, b in zip(outputs_and_gradients(ours, x, w), outputs_and_gradients(reference, x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_layer_norm_matches_nn_layer_norm():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 7, 16)) * 3 + 1).astype(np.float32)
    w = rng.standard_normal((2, 7, 16)).astype(np.float32)
    ours, reference = LayerNorm(16, 1e-12), nn.LayerNorm((16,), epsilon=1e-12)
    same_parameters(ours, reference)
    got, want = outputs_and_gradients(ours, x, w), outputs_and_gradients(reference, x, w)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.abs(got[1]).max() > 0.1  # the input gradient is not trivially zero


def test_softmax_gradient_matches_ops_softmax():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 9)).astype(np.float32) * 4
    w = rng.standard_normal((2, 3, 4, 9)).astype(np.float32)

    class Plain(nn.Cell):
        def construct(self, x):
            return ops.softmax(x, axis=-1)

    for a, b in zip(outputs_and_gradients(Softmax(), x, w), outputs_and_gradients(Plain(), x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_feed_forward_matches_dense_gelu_dense():
    """FeedForward's fused activation and output layer (GELUDense, which recomputes the GELU in the backward) give
    nn.Dense -> nn.GELU(approximate=False) -> nn.Dense's outputs and gradients."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    w = rng.standard_normal((2, 5, 8)).astype(np.float32)

    class Reference(nn.Cell):
        def __init__(self):
            super().__init__()
            self.intermediate, self.act, self.output = nn.Dense(8, 12), nn.GELU(approximate=False), nn.Dense(12, 8)

        def construct(self, x):
            return self.output(self.act(self.intermediate(x.reshape(-1, 8)))).reshape(x.shape)

    ours, reference = FeedForward(8, 12), Reference()
    same_parameters(ours, reference)
    got, want = outputs_and_gradients(ours, x, w), outputs_and_gradients(reference, x, w)
    assert len(got) == 6  # output, input gradient, two weights and two biases
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
