"""The dVAE: Gumbel-softmax relaxation, its building blocks, training through train.py (consistent losses, snapshots,
exact resume) and the reconstruction metrics."""
import json
from types import SimpleNamespace

import cv2
import mindspore as ms
import numpy as np
import pytest

import eval as eval_script
import train as train_script
from conftest import ROOT, tiny_config
from src.config import ConfigError
from src.data.thumbnails import thumb_size
from src.metrics.image import code_usage, mean_colour, psnr
from src.model.dvae import annealed_temperature, depth_to_space, gumbel_softmax, shift_matrix, space_to_depth

TINY = str(ROOT / "config" / "dvae_tiny.yaml")


def test_gumbel_softmax_soft_sums_to_one_and_hard_is_one_hot():
    rng = np.random.default_rng(0)
    logits = ms.Tensor(rng.standard_normal((4, 2, 2, 16)).astype(np.float32))
    noise = ms.Tensor(rng.random((4, 2, 2, 16)).astype(np.float32))
    soft = gumbel_softmax(logits, noise, 1.0).asnumpy()
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)
    assert (soft > 0).all() and (soft < 1).all()
    hard = gumbel_softmax(logits, noise, 1.0, hard=True).asnumpy()
    assert set(np.unique(hard)) == {0.0, 1.0} and (hard.sum(-1) == 1).all()
    assert (hard.argmax(-1) == soft.argmax(-1)).all()
    cold = gumbel_softmax(logits, noise, 0.01).asnumpy()  # a low temperature approaches the hard sample
    np.testing.assert_allclose(cold.max(-1), 1.0, atol=1e-3)

    def first_code(x):
        return gumbel_softmax(x, noise, 1.0, hard=True)[..., 0].sum()
    grad = ms.grad(first_code)(logits).asnumpy()  # straight-through: the soft sample's gradient
    assert np.abs(grad).sum() > 0


def test_temperature_anneals_exponentially_then_stays():
    temps = [float(annealed_temperature(ms.Tensor(c, ms.int32), 1.0, 0.0625, 100).asnumpy()) for c in (0, 50, 100, 400)]
    np.testing.assert_allclose(temps, [1.0, 0.25, 0.0625, 0.0625], rtol=1e-5)


def test_space_to_depth_round_trip_and_grid_shifts():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    packed = space_to_depth(ms.Tensor(x))
    assert packed.shape == (2, 2, 2, 12)
    np.testing.assert_array_equal(depth_to_space(packed).asnumpy(), x)
    grid = 3
    values = np.arange(1, grid * grid + 1, dtype=np.float32)
    shifted = (values @ shift_matrix(grid)).reshape(9, grid, grid)
    padded = np.pad(values.reshape(grid, grid), 1)
    expected = [padded[1 + dy:1 + dy + grid, 1 + dx:1 + dx + grid] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    np.testing.assert_array_equal(shifted, np.stack(expected))


def test_psnr_baseline_and_code_usage():
    a = np.zeros((2, 4, 4, 3))
    b = a + np.array([0.1, 0.0])[:, None, None, None]
    np.testing.assert_allclose(psnr(b, a), [20.0, np.inf])
    image = np.random.default_rng(0).random((1, 4, 4, 3))
    np.testing.assert_allclose(mean_colour(image)[0, 2, 3], image[0].mean((0, 1)))
    usage = code_usage(np.array([[0, 1], [2, 3]]), 8)
    assert usage["codes_used"] == 4 and usage["perplexity"] == pytest.approx(4.0)


def test_prepared_without_thumbnails_is_refused():
    data = SimpleNamespace(root="/data/x", meta={"prepare": {"image": {"thumb_size": 0}}})
    with pytest.raises(ConfigError, match="prepared without image thumbnails"):
        thumb_size(data)


def log_of(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_train_snapshot_resume_and_evaluate(prepared_complete, tmp_path, capsys):
    data = f"data.path={prepared_complete}"
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train_script.main(["--config", TINY, "--set", data, f"train.output_dir={whole}"]) == 0
    entries = log_of(whole)
    assert len(entries) == 8
    for e in entries:  # the total is the weighted sum of the parts on every step (a CPU memory-reuse bug broke it)
        assert e["loss"] == pytest.approx(e["recon"] + 0.001 * e["kl"], rel=1e-4)
    grid = cv2.imread(str(whole / "reconstructions_00000008.png"))
    assert grid.shape == (2 * 18 + 2, 4 * 18 + 2, 3)  # 4 validation images over their reconstructions, 16 px + gaps

    # the Gumbel noise comes from a counter saved in the checkpoint: a resumed run repeats the uninterrupted one
    assert train_script.main(["--config", TINY, "--set", data, f"train.output_dir={cut}", "train.max_steps=8",
                              "train.save_every=4"]) == 0
    (cut / "step_00000008.ckpt").unlink()
    (cut / "train_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log_of(cut)[:4]))
    assert train_script.main(["--config", TINY, "--set", data, f"train.output_dir={cut}", "train.max_steps=8",
                              "--resume"]) == 0
    np.testing.assert_allclose([e["loss"] for e in log_of(cut)], [e["loss"] for e in entries], rtol=1e-5)

    capsys.readouterr()
    assert eval_script.main(["--task", "dvae", "--ckpt", str(whole)]) == 0
    report = json.loads((whole / "eval_dvae_val.json").read_text())
    assert report["items"] == 8 and report["codebook_size"] == 16
    assert report["psnr_gain"] == pytest.approx(report["psnr"] - report["baseline_psnr"])
    assert (whole / "reconstructions_val.png").is_file()
    assert "per-image mean colour" in capsys.readouterr().out


def test_code_extraction_round_trip(coded):
    """Samples without an image get -1 rows, the others the encoder's codes; another codebook is refused."""
    from src.config import load_config
    from src.data.codes import load_codes
    from src.data.records import open_prepared
    from src.data.thumbnails import load_thumbnails
    from src.tasks.dvae import Reconstruct, load_trained, reconstruct
    path, run = coded
    cfg = load_config(str(run / "config.yaml"))
    data = open_prepared(path)
    model, _ = load_trained(cfg, run)
    for split in ("train", "val"):
        stored = load_codes(data, split, cfg.dvae)
        index, images = load_thumbnails(data, split)
        np.testing.assert_array_equal(stored[index], reconstruct(Reconstruct(model), images)[0])
        assert stored.shape == (data.count(split), 4) and stored[index].min() >= 0 and stored.max() < 16
        without = np.setdiff1d(np.arange(data.count(split)), index)
        assert len(without) > 0 and (stored[without] == -1).all()
    other = load_config(TINY, ["dvae.codebook_size=32"]).dvae
    with pytest.raises(ConfigError, match="codes over 16 codes, but dvae.codebook_size is 32"):
        load_codes(data, "train", other)


def test_dir_batches_carry_the_codes_of_real_images_only(coded):
    from src.data.codes import load_codes
    from src.data.objectives import DIR_COLUMNS, PRETRAIN_COLUMNS
    from src.data.pipeline import create_dataset
    from src.data.records import open_prepared
    path, run = coded
    cfg = tiny_config(f"data.path={path}", "data.match_case_probs=[0.5,0.125,0.125,0.125,0.125]")
    data = open_prepared(path)
    codes = load_codes(data, "train", load_config_of(run).dvae)
    dataset = create_dataset(data, cfg.data, epoch=0, codes=codes)
    rows = negatives = 0
    for batch in dataset.create_dict_iterator(num_epochs=1, output_numpy=True):
        assert list(batch) == PRETRAIN_COLUMNS + DIR_COLUMNS
        # a row's codes follow its sample only when it is not a matching negative (weight 0 there anyway)
        weight = batch["dir_weight"]
        negatives += int((batch["match_label"] > 0).sum())
        assert (weight[batch["match_label"] > 0] == 0).all()
        assert ((weight > 0) <= (batch["image_codes"] >= 0).all(1)).all()
        rows += int(weight.sum())
    assert rows > 0 and negatives > 0


def load_config_of(run):
    from src.config import load_config
    return load_config(str(run / "config.yaml"))


@pytest.mark.e2e
def test_pretraining_with_dir(coded, dir_pretrained, tmp_path, capsys):
    """DIR joins the fused train step: its loss starts near ln(codebook) and falls; the run records the dVAE its
    codes came from; data without codes, codes of another codebook, or another dVAE are refused before training."""
    from src.data.codes import codes_meta
    from src.data.records import open_prepared
    path, dvae_run = coded
    entries = log_of(dir_pretrained)
    assert abs(entries[0]["dir"] - np.log(16)) < 0.5 and entries[-1]["dir"] < entries[0]["dir"]
    assert all(e["mlm"] > 0 and e["dtr"] > 0 for e in entries)  # the other losses still train beside it
    recorded = load_config_of(dir_pretrained).dvae.checkpoint
    assert recorded == codes_meta(open_prepared(path))["dvae_checkpoint"] and recorded.startswith(str(dvae_run))

    pretrain = str(ROOT / "config" / "pretrain_tiny.yaml")
    sets = [f"data.path={path}", "loss.dir=1.0"]
    capsys.readouterr()
    assert train_script.main(["--config", pretrain, "--set", *sets, "dvae.codebook_size=32",
                              f"train.output_dir={tmp_path / 'x'}"]) == 2
    assert "codes over 16 codes, but dvae.codebook_size is 32" in capsys.readouterr().err
    assert train_script.main(["--config", pretrain, "--set", *sets, "dvae.codebook_size=16",
                              f"dvae.checkpoint={dir_pretrained}", f"train.output_dir={tmp_path / 'z'}"]) == 2
    assert "but the codes in" in capsys.readouterr().err
    assert train_script.main(["--config", pretrain, "--set", f"data.path={ROOT / 'nowhere'}", "loss.dir=1.0",
                              f"train.output_dir={tmp_path / 'y'}"]) == 2


def test_dir_loss_ignores_rows_without_weight():
    from src.config import LossConfig, ModelConfig
    from tests.conftest import data_dims
    from src.tasks.pretrain import PretrainLoss
    ms.set_seed(0)
    cfg = ModelConfig(hidden=32, layers=1, heads=2, intermediate=64, decoder_layers=1, vision_decoder_layers=1,
                      max_positions=80, dropout=0.0)
    net = PretrainLoss(cfg, LossConfig(dir=1.0), data_dims(50, 12, 10, 8, 16, 12, 4, codebook_size=16))
    rng = np.random.default_rng(0)
    memory = ms.Tensor(rng.standard_normal((3, 5, 32)).astype(np.float32))
    mask = ms.Tensor(np.ones((3, 5), np.float32))
    codes = rng.integers(0, 16, (3, 4)).astype(np.int32)
    weights = ms.Tensor(np.array([1.0, 1.0, 0.0], np.float32))
    first = float(net.dir_loss(ms.Tensor(codes), memory, mask, weights).asnumpy())
    codes[2] = (codes[2] + 5) % 16  # the unweighted row changes: the loss does not
    assert float(net.dir_loss(ms.Tensor(codes), memory, mask, weights).asnumpy()) == pytest.approx(first, rel=1e-6)
    codes[0] = (codes[0] + 5) % 16
    assert float(net.dir_loss(ms.Tensor(codes), memory, mask, weights).asnumpy()) != pytest.approx(first, rel=1e-3)
