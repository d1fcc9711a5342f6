"""The training machinery: schedules, optimizer groups, the train step (loss scale, clipping, accumulation),
checkpoints, and train.py's exact resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.config import ConfigError, TrainConfig
from src.model.dropout import Dropout
from src.train.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from src.train.schedule import learning_rates
from src.train.step import TrainStep, build_optimizer, no_decay
from tests.conftest import ROOT


def test_linear_warmup_then_decay():
    lr = learning_rates(TrainConfig(lr=1.0, warmup_steps=4, schedule="linear"), 10)
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(lr[4:], np.linspace(1.0, 0.0, 6), atol=1e-6)


def test_cosine_and_constant_schedules():
    lr = learning_rates(TrainConfig(lr=2.0, warmup_steps=0, schedule="cosine", min_lr_ratio=0.1), 5)
    np.testing.assert_allclose(lr, 0.2 + 1.8 * 0.5 * (1 + np.cos(np.pi * np.arange(5) / 4)), rtol=1e-6)
    assert np.all(learning_rates(TrainConfig(lr=3.0, warmup_steps=2, schedule="constant"), 6)[2:] == 3.0)
    with pytest.raises(ConfigError, match="train.schedule"):
        learning_rates(TrainConfig(schedule="step"), 5)


def test_no_weight_decay_on_biases_and_layer_norm():
    assert no_decay("net.encoder.layers.0.attention.query.bias")
    assert no_decay("net.encoder.layers.0.attention_norm.gamma") and no_decay("net.embeddings.text.norm.beta")
    assert not no_decay("net.encoder.layers.0.attention.query.weight")
    assert not no_decay("net.embeddings.text.word_embeddings.embedding_table")


class Regression(nn.Cell):
    """A tiny loss cell with the (total, [losses]) interface of the real ones."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(3, 1, weight_init="ones", bias_init="zeros")

    def construct(self, x, y):
        loss = ((self.dense(x).squeeze(-1) - y) ** 2).mean()
        return loss, ops.stack((loss, loss * 0))


def make_step(**train):
    cfg = TrainConfig(lr=0.1, weight_decay=0.0, grad_clip=0.0, **train)
    net = Regression()
    step = TrainStep(net, build_optimizer(net.trainable_params(), cfg, learning_rates(cfg, 100)), cfg)
    step.set_train(True)
    return step, net


def batch(seed, n=8):
    rng = np.random.default_rng(seed)
    return ms.Tensor(rng.standard_normal((n, 3), dtype=np.float32)), ms.Tensor(rng.standard_normal(n, np.float32))


def weights(net):
    return [p.asnumpy().copy() for p in net.trainable_params()]


def test_parameters_not_from_init_learn_at_the_scaled_rate():
    cfg = TrainConfig(lr=0.01, weight_decay=0.0, grad_clip=0.0, new_lr_scale=10.0)
    net = Regression()
    opt = build_optimizer(net.trainable_params(), cfg, learning_rates(cfg, 10), initialised=("dense.weight",))
    step = TrainStep(net, opt, cfg)
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    step(True, *batch(0))
    moved = [np.abs(p.asnumpy() - b).max() for p, b in zip(net.trainable_params(), before)]
    # bias-corrected Adam's first update is lr per element whatever the gradient's size (AdamWeightDecay's was
    # 3.16 lr)
    assert moved[0] == pytest.approx(0.01, rel=0.01) and moved[1] == pytest.approx(0.1, rel=0.01)


def test_loss_scale_cancels_out():
    """The same data gives the same update with a dynamic scale of 2^16 and with no scaling."""
    (a, net_a), (b, net_b) = make_step(loss_scale="dynamic"), make_step(loss_scale="none")
    for s in range(3):
        ra, rb = a(True, *batch(s)), b(True, *batch(s))
        assert float(ra[2].asnumpy()) == 65536.0 and float(rb[2].asnumpy()) == 1.0
        np.testing.assert_allclose(ra[3].asnumpy(), rb[3].asnumpy(), rtol=1e-5)  # the unscaled gradient norm
    for wa, wb in zip(weights(net_a), weights(net_b)):
        np.testing.assert_allclose(wa, wb, rtol=1e-5)


def test_overflow_skips_the_step_and_shrinks_the_scale_then_it_grows():
    step, net = make_step(loss_scale="dynamic", init_loss_scale=1024.0, loss_scale_window=2)
    before = weights(net)
    x, y = batch(0)
    out = step(True, ms.Tensor(np.full((8, 3), np.inf, np.float32)), y)
    assert bool(out[4].asnumpy()) and float(step.loss_scale.asnumpy()) == 512.0
    for w0, w1 in zip(before, weights(net)):
        np.testing.assert_array_equal(w0, w1)
    step(True, x, y)
    assert float(step.loss_scale.asnumpy()) == 512.0
    step(True, x, y)  # the second finite step in a row
    assert float(step.loss_scale.asnumpy()) == 1024.0


def test_global_norm_clipping_limits_the_update():
    """Adam normalises the gradient, so compare against SGD-like evidence: the reported norm and the clipped moment."""
    free, _ = make_step(loss_scale="none")
    cfg = TrainConfig(lr=0.1, weight_decay=0.0, grad_clip=0.01, loss_scale="none")
    net = Regression()
    opt = build_optimizer(net.trainable_params(), cfg, learning_rates(cfg, 10))
    clipped = TrainStep(net, opt, cfg)
    clipped.set_train(True)
    norm_free = float(free(True, *batch(1))[3].asnumpy())
    norm_clipped = float(clipped(True, *batch(1))[3].asnumpy())
    assert norm_free == pytest.approx(norm_clipped) and norm_free > 0.01
    first_moment = np.concatenate([m.asnumpy().ravel() for m in opt.moments1])
    # after one step the first moment is (1 - beta1) x the clipped gradient, whose norm is the clip value
    assert np.linalg.norm(first_moment) / (1 - 0.9) == pytest.approx(0.01, rel=1e-4)


def test_accumulation_equals_one_big_batch():
    big, net_big = make_step(loss_scale="dynamic")
    acc, net_acc = make_step(loss_scale="dynamic", accumulation_steps=2)
    x, y = batch(3, n=8)
    big(True, x, y)
    assert not bool(acc(False, x[:4], y[:4])[4].asnumpy())
    acc(True, x[4:], y[4:])
    for wa, wb in zip(weights(net_big), weights(net_acc)):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)
    assert all(float(np.abs(a.asnumpy()).max()) == 0.0 for a in acc.accumulated)  # buffers cleared


def test_dropout_masks_follow_the_call_counter():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        d = Dropout(0.25)
        d.set_train(True)
        x = ms.Tensor(np.ones((64, 4096), np.float32))
        first, second = d(x).asnumpy(), d(x).asnumpy()
        assert abs((first > 0).mean() - 0.75) < 0.01 and first.max() == pytest.approx(1 / 0.75)
        assert ((first > 0) != (second > 0)).mean() > 0.3  # a fresh mask per call
        d.calls.set_data(ms.Tensor(0, ms.int32))
        np.testing.assert_array_equal(d(x).asnumpy(), first)  # the counter is the whole random state
        d.set_train(False)
        np.testing.assert_array_equal(d(x).asnumpy(), x.asnumpy())
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_checkpoint_round_trip_is_atomic_and_pruned(tmp_path):
    step, net = make_step()
    step(True, *batch(0))
    for s in (1, 2, 3):
        save_checkpoint(step, tmp_path, s, epoch=0, batch=s, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002.ckpt", "step_00000003.ckpt"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    other, other_net = make_step()
    position = load_checkpoint(other, latest_checkpoint(tmp_path))
    assert position == {"step": 3, "epoch": 0, "batch": 3}
    for wa, wb in zip(weights(net), weights(other_net)):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(step.optimizer.moments1[0].asnumpy(), other.optimizer.moments1[0].asnumpy())


def test_weights_only_file_is_refused_for_resume(tmp_path):
    step, net = make_step()
    ms.save_checkpoint(net, str(tmp_path / "weights.ckpt"))
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(step, tmp_path / "weights.ckpt")


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_sigkill_and_resume_gives_the_same_losses(prepared, tmp_path):
    """Dropout on, 12 steps over 3 epochs, killed right after the step-6 checkpoint: the resumed run's steps 7-12 equal
    those of an uninterrupted run."""
    args = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "config/pretrain_tiny.yaml"), "--set",
            f"data.path={prepared}", "train.save_every=2", "train.epochs=3", "train.keep_checkpoints=0"]
    env = {**os.environ, "GLOG_v": "3"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": tmp_path}
    whole = subprocess.Popen(args + [f"train.output_dir={tmp_path / 'whole'}"], **quiet)
    killed = subprocess.Popen(args + [f"train.output_dir={tmp_path / 'killed'}"], **quiet)
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "step_00000006.ckpt").exists():
        assert killed.poll() is None and time.time() < deadline, "the run ended before its step-6 checkpoint"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = subprocess.run(args + [f"train.output_dir={tmp_path / 'killed'}", "--resume"], capture_output=True,
                             text=True, env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "at step 6" in resumed.stdout
    assert whole.wait() == 0
    a, b = read_log(tmp_path / "whole"), read_log(tmp_path / "killed")
    assert [e["step"] for e in a] == [e["step"] for e in b] == list(range(1, 13))
    names = ["loss", "mlm", "mvfr", "mrc", "mafr", "mam_nce", "match", "dtr", "lr", "grad_norm"]
    np.testing.assert_allclose([[e[n] for n in names] for e in b[6:]], [[e[n] for n in names] for e in a[6:]],
                               rtol=1e-5)
    assert a[-1]["loss"] < a[0]["loss"]


def test_train_py_reports_user_errors_in_one_line(tmp_path, prepared):
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "train.py"), "--config",
                                     str(ROOT / "config/pretrain_tiny.yaml"), *a], capture_output=True, text=True,
                                    cwd=tmp_path)
    bad_key = run("--set", "train.learning_rate=1")
    assert bad_key.returncode == 2 and "unknown key 'learning_rate'" in bad_key.stderr
    no_data = run("--set", f"data.path={tmp_path / 'nowhere'}")
    assert no_data.returncode == 2 and "not a prepared dataset" in no_data.stderr
    assert "Traceback" not in no_data.stderr
    never_saves = run("--set", f"data.path={prepared}", "train.save_every=0")
    assert never_saves.returncode == 2 and "train.save_every and train.log_every must be at least 1" in \
        never_saves.stderr and "Traceback" not in never_saves.stderr


def test_checkpoint_of_another_model_is_refused(tmp_path):
    step, _ = make_step()
    save_checkpoint(step, tmp_path, 1, epoch=0, batch=1)
    cfg = TrainConfig(lr=0.1, weight_decay=0.0, grad_clip=0.0)

    class Wider(Regression):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(4, 1)

        def construct(self, x, y):
            return super().construct(ops.concat((x, x[:, :1]), 1), y)

    net = Wider()
    other = TrainStep(net, build_optimizer(net.trainable_params(), cfg, learning_rates(cfg, 10)), cfg)
    with pytest.raises(CheckpointError, match="step_00000001.ckpt"):
        load_checkpoint(other, tmp_path / "step_00000001.ckpt")
