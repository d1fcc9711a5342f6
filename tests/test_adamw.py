"""AdamW against torch.optim.AdamW: the same parameters after five steps of two groups (weight decay on one, its own
learning-rate table each); MindSpore's AdamWeightDecay (no bias correction) is not."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from src.train.adamw import AdamW

torch = pytest.importorskip("torch")


def run_both(make_ms_optimizer, steps: int = 5):
    rng = np.random.default_rng(0)
    w0, b0 = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    grads = [(rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32))
             for _ in range(steps)]
    lrs = np.array([0.01, 0.02, 0.03, 0.02, 0.01], np.float32)[:steps]
    w, b = ms.Parameter(ms.Tensor(w0), name="w"), ms.Parameter(ms.Tensor(b0), name="bias")
    groups = [{"params": [w], "weight_decay": 0.1, "lr": ms.Tensor(lrs)},
              {"params": [b], "weight_decay": 0.0, "lr": ms.Tensor(lrs * 2)}, {"order_params": [w, b]}]
    ours = make_ms_optimizer(groups, ms.Tensor(lrs))
    tw, tb = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    reference = torch.optim.AdamW([{"params": [tw], "weight_decay": 0.1}, {"params": [tb], "weight_decay": 0.0}],
                                  lr=0.01, betas=(0.9, 0.999), eps=1e-6)
    for step, (gw, gb) in enumerate(grads):
        ours((ms.Tensor(gw), ms.Tensor(gb)))
        reference.param_groups[0]["lr"], reference.param_groups[1]["lr"] = float(lrs[step]), float(lrs[step] * 2)
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        reference.step()
    return (w.asnumpy(), b.asnumpy()), (tw.detach().numpy(), tb.detach().numpy()), ours


def test_adamw_equals_torch_after_five_steps():
    (w, b), (tw, tb), ours = run_both(lambda g, lr: AdamW(g, learning_rate=lr, beta1=0.9, beta2=0.999, eps=1e-6))
    np.testing.assert_allclose(w, tw, atol=1e-6)
    np.testing.assert_allclose(b, tb, atol=1e-6)
    assert int(ours.global_step.asnumpy()) == 5
    assert sorted(p.name for p in ours.moments1) == ["adam_m.bias", "adam_m.w"]  # checkpoint names kept


def test_mindspore_adamweightdecay_is_not_bias_corrected():
    (w, _), (tw, _), _ = run_both(lambda g, lr: nn.AdamWeightDecay(g, learning_rate=lr, eps=1e-6), steps=1)
    # step 1 without bias correction moves by (1 - b1) / sqrt(1 - b2) = 3.16 times the learning rate
    assert np.abs(w - tw).max() > 0.01
