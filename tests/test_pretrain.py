"""The OPT network, its heads and the fused pre-training loss (graph mode, tiny model)."""
import dataclasses
import inspect

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.data.objectives import DIR_COLUMNS, PRETRAIN_COLUMNS
from src.modality import INPUT_COLUMNS
from src.data.pipeline import create_dataset
from src.data.records import open_prepared
from src.model.heads import gather_positions
from src.model.losses import contrastive_loss, matching_loss, regression_loss
from src.model.opt import DataDims
from src.tasks.pretrain import LOSS_NAMES, PretrainLoss
from tests.conftest import tiny_config

TINY_MODEL = ["model.hidden=32", "model.layers=2", "model.heads=2", "model.intermediate=64", "model.decoder_layers=1",
              "model.dropout=0.0"]


def t(x, dtype=ms.float32):
    return ms.Tensor(np.asarray(x), dtype)


def test_loss_cell_reads_the_pipeline_columns_by_name(prepared):
    """The batch reaches the cell as the pipeline's columns (PRETRAIN_COLUMNS, then DIR_COLUMNS); the cell finds each
    by its name (those it names, and each modality's masked positions, weights, targets and class targets), so every
    name it reads must be one of them, and every pipeline column must be read."""
    import re
    net, _, _ = build(prepared)
    read = set(re.findall(r'at\["(\w+)"\]', inspect.getsource(PretrainLoss.construct)))
    for prefix, _, _, losses in net.masked_plan:
        read |= {f"{prefix}_{part}" for part in ("positions", "weights", "targets")}
        read |= {column for _, _, classes in losses for column in classes}
    assert read == set(PRETRAIN_COLUMNS + DIR_COLUMNS) - set(INPUT_COLUMNS), read


def test_gather_positions():
    states = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    got = gather_positions(t(states), t([[4, 0], [1, 1]], ms.int32)).asnumpy()
    np.testing.assert_array_equal(got, [[states[0, 4], states[0, 0]], [states[1, 1], states[1, 1]]])


def test_contrastive_sign_and_masking():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((2, 3, 8)).astype(np.float32)
    w = np.ones((2, 3), np.float32)
    exact = contrastive_loss(t(target), t(target), t(w), 0.1).asnumpy()
    shuffled = contrastive_loss(t(target[:, ::-1].copy()), t(target), t(w), 0.1).asnumpy()
    assert exact < 0.1 < shuffled  # lower when the prediction equals its own target
    w_one = w.copy()
    w_one[:, 1:] = 0
    pred = target.copy()
    pred[:, 1:] = 100.0  # garbage in unused slots changes nothing
    a = contrastive_loss(t(pred), t(target), t(w_one), 0.1).asnumpy()
    b = contrastive_loss(t(target), t(target), t(w_one), 0.1).asnumpy()
    assert a == pytest.approx(b)


def test_regression_and_matching_ignore_unweighted_items():
    pred = np.zeros((1, 2, 4), np.float32)
    target = np.stack([np.ones(4), np.full(4, 50.0)])[None].astype(np.float32)
    assert regression_loss(t(pred), t(target), t([[1, 0]])).asnumpy() == pytest.approx(1.0)
    logits = np.array([[9.0, -9, -9, -9, -9], [-9, -9, 9, -9, -9]], np.float32)
    good = matching_loss(t(logits), t([0, 2], ms.int32), t([1, 1])).asnumpy()
    bad = matching_loss(t(logits), t([1, 0], ms.int32), t([1, 1])).asnumpy()
    ignored = matching_loss(t(logits), t([0, 0], ms.int32), t([1, 0])).asnumpy()
    assert good < 0.01 < bad and ignored == pytest.approx(good * 2, rel=0.5)


def build(prepared, *overrides):
    cfg = tiny_config(*TINY_MODEL, *overrides)
    data = open_prepared(prepared)
    dc = dataclasses.replace(cfg.data, path=str(prepared))
    net = PretrainLoss(cfg.model, cfg.loss, DataDims.from_prepared(data, dc))
    return net, data, dc


def test_zero_weight_losses_are_not_built(prepared):
    net, _, _ = build(prepared, "loss.mlm=0", "loss.dtr=0", "loss.mam_nce=0", "loss.mafr=0")
    assert net.mlm_head is None and net.mafr_head is None and net.dtr_head is None
    assert net.match_head is not None


def test_init_from_minilm_loads_the_encoder(prepared):
    net, _, _ = build(prepared, "model.hidden=384", "model.heads=12", "model.intermediate=1536",
                      "model.init_from=minilm")
    from safetensors.numpy import load_file
    from src.model.convert import resolve_checkpoint
    ref = load_file(resolve_checkpoint("minilm"))
    got = net.net.encoder.layers[0].attention.query.weight.asnumpy()
    np.testing.assert_array_equal(got, ref["encoder.layer.0.attention.self.query.weight"])


@pytest.mark.e2e
def test_every_enabled_loss_decreases(prepared):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    net, data, dc = build(prepared)
    opt = nn.Adam(net.trainable_params(), learning_rate=3e-3)
    grad_fn = ms.value_and_grad(net, None, opt.parameters, has_aux=True)

    @ms.jit
    def step(*batch):
        (total, parts), grads = grad_fn(*batch)
        opt(grads)
        return total, parts

    history = []
    for epoch in range(10):
        for batch in create_dataset(data, dc, epoch=epoch).create_tuple_iterator(num_epochs=1):
            history.append(step(*batch)[1].asnumpy())
    history = np.array(history)
    assert len(history) == 40 and np.isfinite(history).all()
    first, last = history[:8].mean(0), history[-8:].mean(0)
    assert list(net.use.values()) == [True] * 7 + [False]  # DIR needs dVAE codes: tests/test_dvae.py trains it
    for i, name in enumerate(LOSS_NAMES[:7]):
        assert last[i] < first[i], f"{name}: {first[i]:.3f} -> {last[i]:.3f}"


def test_cached_decoder_steps_equal_the_full_decoder():
    from src.config import ModelConfig
    from src.model.opt import TextDecoder
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        ms.set_seed(3)
        dec = TextDecoder(ModelConfig(hidden=16, heads=2, intermediate=32, decoder_layers=2, max_positions=16,
                                      dropout=0.1), vocab_size=50)
        dec.set_train(False)
        rng = np.random.default_rng(0)
        ids = rng.integers(1, 50, (2, 6)).astype(np.int32)
        memory = t(rng.standard_normal((2, 5, 16)))
        memory_mask = t([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        full = dec(t(ids, ms.int32), memory, memory_mask).asnumpy()
        self_cache, memory_cache, memory_bias = dec.start_cache(memory, memory_mask, max_len=8)
        for i in range(ids.shape[1]):
            out, self_cache = dec.step(t(ids[:, i:i + 1], ms.int32), t(i, ms.int32), self_cache, memory_cache,
                                       memory_bias)
            np.testing.assert_allclose(out.asnumpy()[:, 0], full[:, i], atol=1e-5)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
