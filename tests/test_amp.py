"""Mixed precision (train.amp_level O2, src/train/precision.py): what stays float32, O2's pre-training losses against
O0's, every task trained under O2, and every base and COCO recipe (all but the dVAE's set O2) for two steps at tiny
sizes.

Each training run costs a graph compilation (20-70 s on 2 busy cores): the O2 runs of the caption, retrieval and VQA
tiny recipes are marked slow, since their base recipes train them under O2 in the default run."""
import json
import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

import train as train_script
from src.config import ConfigError, DataConfig, load_config
from src.data.records import open_prepared
from src.model.losses import CrossEntropy, SoftTargetKL
from src.model.opt import DataDims
from src.model.primitives import LayerNorm, Softmax
from src.tasks.registry import training
from src.tasks.retrieval import RetrievalLoss
from src.train.precision import mixed_precision
from tests.conftest import ROOT
from tests.test_vqa_data import prepare_vqa

CONFIGS = ROOT / "config"
# named one by one (tests/test_config.py fails on a base or coco recipe of config/ that is not here)
BASES = ["caption_base", "caption_coco", "dvae_base", "pretrain_base", "retrieval_base", "retrieval_coco", "vqa_base"]
# measured against O0 over tests/test_step_losses.py's 8 steps: total loss within 0.11 %, gradient norm within 0.23 %
LOSS_TOLERANCE = 0.01
NORM_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def vqa_set(tmp_path_factory):
    return prepare_vqa(tmp_path_factory.mktemp("amp_vqa"), load_config(str(CONFIGS / "vqa_tiny.yaml")).prepare,
                       images=6, val_images=2)


def data_of(task, prepared, coded, vqa_set):
    return {"vqa": vqa_set / "train", "pretrain": coded[0]}.get(task, prepared)


ONE_LAYER = "model.layers=1"  # compiles faster (the graph inlines every layer); two layers change nothing for AMP


def run(config, out, *sets):
    assert train_script.main(["--config", str(config), "--set", f"train.output_dir={out}", *sets]) == 0
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def finite(entries, names):
    return all(math.isfinite(e[n]) for e in entries for n in ("loss",) + tuple(names))


def test_o2_keeps_norms_softmaxes_and_losses_in_float32(prepared):
    cfg = load_config(str(CONFIGS / "retrieval_tiny.yaml"))
    dims = DataDims.from_prepared(open_prepared(prepared), DataConfig(max_audio_tokens=16))
    net = RetrievalLoss(cfg.model, cfg.retrieval, dims)
    mixed_precision(net, "O2")
    kept = (LayerNorm, Softmax, CrossEntropy, SoftTargetKL, nn.SoftmaxCrossEntropyWithLogits)
    cells = [cell for _, cell in net.cells_and_names() if cell is not net]
    assert net.get_flags().get("fp16") is not True  # the loss cell: losses summed and stacked in float32
    assert all(c.get_flags()["fp32"] for c in cells if isinstance(c, kept))
    assert sum(isinstance(c, LayerNorm) for c in cells) > 4
    assert net.model.net.encoder.layers[0].attention.query.get_flags()["fp16"]
    assert all(p.dtype == ms.float32 for p in net.get_parameters() if p.dtype not in (ms.int32, ms.bool_))
    with pytest.raises(ConfigError, match="train.amp_level must be one of O0, O2"):
        mixed_precision(net, "O3")


@pytest.mark.parametrize("task", ["dvae"] + [pytest.param(t, marks=pytest.mark.slow)
                                             for t in ("caption", "retrieval", "vqa")])
def test_o2_trains_each_tiny_recipe(task, prepared, vqa_set, tmp_path):
    """The pre-training's tiny recipe is the next test's. A loss scale that fits float16 (the default 65536 overflows
    the first steps of these tiny random networks, whose gradients reach 4, and the dynamic scale skips them): every
    step is applied."""
    entries = run(CONFIGS / f"{task}_tiny.yaml", tmp_path / "run",
                  f"data.path={vqa_set / 'train' if task == 'vqa' else prepared}", "train.max_steps=2",
                  "train.amp_level=O2", "train.init_loss_scale=1024", ONE_LAYER)
    assert [e["step"] for e in entries] == [1, 2]
    assert finite(entries, training(task).loss_names + ("grad_norm",))
    assert not any(e["overflow"] for e in entries)


@pytest.mark.e2e
def test_o2_pretraining_follows_o0(prepared):
    """tests/test_step_losses.py's 8 steps of the tiny pre-training (dropout, AdamW, clipping; its recorded O0 numbers,
    which that test checks) under O2, at a loss scale that fits float16 (O0's numbers do not depend on the scale)."""
    from tests.test_step_losses import RECORDED_LOSS, RECORDED_NORM, tiny_run
    losses, norms = tiny_run(prepared, overrides=("train.amp_level=O2", "train.init_loss_scale=1024"))
    np.testing.assert_allclose(losses, RECORDED_LOSS, rtol=LOSS_TOLERANCE)
    np.testing.assert_allclose(norms, RECORDED_NORM, rtol=NORM_TOLERANCE)
    assert np.abs(losses / RECORDED_LOSS - 1).max() > 1e-6  # it did run in float16


def tiny_sizes(base: str, data_path) -> list:
    """Overrides of a base recipe's sizes only (model, data lengths, batch, dVAE) and where it reads and writes."""
    cfg = load_config(str(CONFIGS / f"{base}.yaml"))
    sets = [f"data.path={data_path}", "train.max_steps=2", "data.batch_size=8", "data.workers=1",
            "dvae.codebook_size=16", "dvae.channels=8", "dvae.code_dim=16", "dvae.samples=2"]
    if cfg.task != "dvae":
        m = cfg.model
        sets += ["model.hidden=32", ONE_LAYER, "model.heads=2", "model.intermediate=64",
                 "model.max_positions=64", "model.embed_dim=16", "data.max_text_len=12", "data.max_regions=4",
                 "data.max_audio_tokens=16", f"model.decoder_layers={min(m.decoder_layers, 1)}",
                 f"model.vision_decoder_layers={min(m.vision_decoder_layers, 1)}"]
        if m.init_from.startswith("runs/"):  # a run of another base recipe, absent here
            sets.append("model.init_from=")
    return sets


@pytest.mark.e2e
@pytest.mark.parametrize("base", BASES)
def test_base_recipe_runs_two_steps_at_tiny_sizes(base, prepared, coded, vqa_set, tmp_path):
    cfg = load_config(str(CONFIGS / f"{base}.yaml"))
    if cfg.task != "dvae":
        assert cfg.train.amp_level == "O2", f"{base}: the base recipes train in mixed precision"
    entries = run(CONFIGS / f"{base}.yaml", tmp_path / "run",
                  *tiny_sizes(base, data_of(cfg.task, prepared, coded, vqa_set)))
    assert [e["step"] for e in entries] == [1, 2]
    assert finite(entries, training(cfg.task).loss_names)
    # the loss-scale path with float16 gradients: a step whose gradients overflow (at the initial 65536, the tiny
    # random networks' do) is skipped and halves a dynamic scale; the others have a finite gradient norm
    first, second = entries
    if cfg.train.loss_scale == "dynamic" and first["overflow"]:
        assert second["loss_scale"] == first["loss_scale"] / cfg.train.loss_scale_factor
    assert all(math.isfinite(e["grad_norm"]) for e in entries if not e["overflow"])
