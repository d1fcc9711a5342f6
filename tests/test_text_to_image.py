"""Text-to-image on a tiny DIR pre-training: sampling codes with and without the cache, decoding them with the dVAE,
R-precision, eval.py / infer.py / export.py end to end, and the refusals."""
import json

import cv2
import mindspore as ms
import numpy as np
import pytest

import eval as eval_script
import export as export_script
import infer as infer_script
from src.config import ConfigError, with_section
from tests.conftest import ROOT
from src.metrics.image import caption_candidates, colour_agreement, own_caption_ranks
from src.tasks.text_to_image import first_of_each, image_generator, load_trained


def run_config(run, *overrides):
    from src.train.checkpoint import load_run_config
    return load_run_config(run, overrides=list(overrides))


@pytest.fixture(scope="module")
def loaded(dir_pretrained):
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = run_config(dir_pretrained, "t2i.batch_size=4")
    return (cfg,) + load_trained(cfg, dir_pretrained)


def caption_inputs(data, cfg, rows=4):
    from src.infer.items import load_items
    items = load_items(data, cfg.data, "val")
    return lambda batch: items.compose({"text": batch % rows, "audio": batch % rows})


@pytest.mark.e2e
def test_cached_and_uncached_sampling_agree_and_top_k_1_is_greedy(loaded):
    """Same seed: the same codes with the cache as rerunning the decoder over the prefix; top_k 1 ignores the seed."""
    import dataclasses
    cfg, model, dvae, data = loaded
    make_inputs = caption_inputs(data, cfg)
    cached = image_generator(model, dvae, cfg, ("text",))(6, make_inputs)
    uncached = image_generator(model, dvae, cfg, ("text",), use_cache=False)(6, make_inputs)
    np.testing.assert_array_equal(cached[0], uncached[0])
    np.testing.assert_allclose(cached[1], uncached[1], atol=1e-6)
    codes, images = cached
    assert codes.shape == (6, 4) and codes.min() >= 0 and codes.max() < 16
    assert images.shape == (6, 16, 16, 3) and images.min() >= 0.0 and images.max() <= 1.0

    def greedy(seed):
        settings = with_section(cfg, "t2i", dataclasses.replace(cfg.t2i, top_k=1, seed=seed))
        return image_generator(model, dvae, settings, ("text", "audio"))(4, make_inputs)[0]
    np.testing.assert_array_equal(greedy(0), greedy(1))
    every = with_section(cfg, "t2i", dataclasses.replace(cfg.t2i, top_k=0, temperature=5.0))
    assert not np.array_equal(image_generator(model, dvae, every, ("text",))(8, make_inputs)[0],
                              np.repeat(greedy(0)[:1], 8, 0))


def test_the_decoder_draws_the_sampled_codes(loaded):
    """The images are the dVAE decoder's pictures of exactly the sampled codes."""
    from src.tasks.dvae import Reconstruct
    cfg, model, dvae, data = loaded
    codes, images = image_generator(model, dvae, cfg, ("text",))(4, caption_inputs(data, cfg))
    expected = np.clip(dvae.decode_codes(ms.Tensor(codes)).asnumpy(), 0, 1)
    np.testing.assert_allclose(images, expected, atol=1e-6)
    assert Reconstruct(dvae)(ms.Tensor(images))[0].shape == codes.shape


def test_r_precision_helpers():
    rng = np.random.default_rng(0)
    text_codes = np.array([0, 1, 1, 2, 3, 4, 5])  # items 1 and 2 share a caption
    picked = caption_candidates(text_codes, np.array([1, 4]), 4, rng)
    assert picked.shape == (2, 4) and list(picked[:, 0]) == [1, 4]
    assert 2 not in picked[0, 1:] and 1 not in picked[0, 1:]  # the same caption is no negative
    assert all(len(set(row)) == 4 for row in picked)
    assert caption_candidates(text_codes, np.array([0]), 100, rng).shape == (1, 6)  # cut to the distinct captions
    scores = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.1, 0.2, 0.3]])
    assert list(own_caption_ranks(scores)) == [0, 1, 2]  # a tie counts against the own caption

    truth = np.zeros((3, 2, 2, 3), np.float32)
    truth[1], truth[2] = 0.5, 1.0
    different = ~np.eye(3, dtype=bool)
    assert colour_agreement(truth, truth, ~different) == 1.0
    assert colour_agreement(truth[::-1], truth, ~different) < 0.5
    assert list(first_of_each(np.array([3, 3, 1, 2, 1]))) == [0, 2, 3]


def test_eval_writes_images_sheet_and_r_precision(dir_pretrained, capsys):
    out = dir_pretrained / "eval_t2i.json"
    assert eval_script.main(["--task", "t2i", "--ckpt", str(dir_pretrained), "--out", str(out),
                             "--set", "t2i.batch_size=4", "t2i.candidates=5"]) == 0
    report = json.loads(out.read_text())
    # the tiny val split: 8 samples, one without an image
    assert report["items"] == 7 and report["candidates"] == 5 and report["chance"] == 0.2
    assert 0.0 <= report["r_precision"] <= 1.0 and 0.0 <= report["colour_agreement"] <= 1.0
    predictions = json.loads((dir_pretrained / "predictions_t2i_val.json").read_text())
    assert len(predictions) == 7 and all(0 <= p["rank"] < 5 for p in predictions)
    pngs = sorted((dir_pretrained / "t2i_val").glob("*.png"))
    assert [p.stem for p in pngs] == sorted(p["id"] for p in predictions)
    assert cv2.imread(str(pngs[0])).shape == (16, 16, 3)
    sheet = cv2.imread(report["sheet"])
    assert sheet.shape == (2 * 18 + 2, 7 * 18 + 2, 3)  # 7 ground truths over their 7 generated images
    assert "R-precision" in capsys.readouterr().out


@pytest.mark.e2e
def test_a_retrieval_run_scores_by_its_embeddings(dir_pretrained, coded, tmp_path):
    """t2i.scorer naming a retrieval run: each (caption, image) score is the cosine of that model's caption and image
    embeddings, and eval.py reports R-precision with it."""
    import train as train_script
    from src.infer.items import load_items
    from src.tasks.retrieval import load_trained as load_retrieval
    from src.tasks.t2i_scoring import EmbeddingScorer, load_scorer
    scorer_run = tmp_path / "retrieval"
    assert train_script.main(["--config", str(ROOT / "config" / "retrieval_tiny.yaml"), "--set",
                              f"data.path={coded[0]}", f"train.output_dir={scorer_run}", "train.max_steps=2"]) == 0
    cfg = run_config(dir_pretrained, f"t2i.scorer={scorer_run}", "eval.batch_size=4")
    scorer = load_scorer(cfg, dir_pretrained)
    assert isinstance(scorer, EmbeddingScorer)
    model, data = load_retrieval(run_config(scorer_run), scorer_run)
    items = load_items(data, cfg.data, "val")
    rows = np.flatnonzero(items.present()[:, 1])[:3]
    image_inputs = tuple(items.inputs[c][rows] for c in ("image_feat", "image_boxes", "image_mask"))
    candidates = np.array([[0, 1], [2, 0], [1, 1]])
    scores = scorer(items, candidates, image_inputs)
    text = model.embed("text", *(ms.Tensor(x) for x in items.compose({"text": np.arange(3)}))).asnumpy()
    image = model.embed("image", *(ms.Tensor(x) for x in items.compose({"text": rows}))).asnumpy()
    expected = np.array([[image[i] @ text[c] for c in row] for i, row in enumerate(candidates)])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    out = tmp_path / "eval_t2i.json"
    assert eval_script.main(["--task", "t2i", "--ckpt", str(dir_pretrained), "--out", str(out), "--set",
                             "t2i.batch_size=4", "t2i.candidates=5", f"t2i.scorer={scorer_run}"]) == 0
    assert 0.0 <= json.loads(out.read_text())["r_precision_ground_truth"] <= 1.0


@pytest.mark.e2e
def test_infer_draws_a_caption_with_and_without_audio(dir_pretrained, prepared, tmp_path, capsys):
    out = tmp_path / "drawn.png"
    assert infer_script.main(["--ckpt", str(dir_pretrained), "--text", "red apple", "--out", str(out)]) == 0
    assert cv2.imread(str(out)).shape == (16, 16, 3)
    wav = sorted((prepared.parent / "wav").glob("*.wav"))[0]
    assert infer_script.main(["--ckpt", str(dir_pretrained), "--text", "red apple " * 20, "--audio", str(wav),
                              "--out", str(tmp_path / "both.png"), "--count", "3"]) == 0
    assert all((tmp_path / f"both_{i}.png").is_file() for i in range(3))
    assert "word pieces, the model reads the first 10 (data.max_text_len=12)" in capsys.readouterr().err


@pytest.mark.e2e
def test_export_draws_what_the_network_draws(dir_pretrained, tmp_path):
    prefix = tmp_path / "t2i"
    assert export_script.main(["--task", "t2i", "--ckpt", str(dir_pretrained), "--out", str(prefix),
                               "--set", "t2i.top_k=4"]) == 0
    meta = json.loads((prefix / "bundle.json").read_text())
    assert set(meta["graphs"]) == {"start_text", "start_text_audio", "step", "decode"}
    assert meta["generate"]["codes_per_image"] == 4 and meta["generate"]["candidates_per_step"] == 4
    assert all(g["verified_max_abs_diff"] < 1e-4 for g in meta["graphs"].values())
    for source in (["--ckpt", str(dir_pretrained)], ["--mindir", str(prefix)]):
        name = source[0][2:]
        assert infer_script.main([*source, "--text", "green tree", "--out", str(tmp_path / f"{name}.png"),
                                  "--set", "t2i.top_k=4", "t2i.seed=3"]) == 0
    drawn = [cv2.imread(str(tmp_path / f"{name}.png")).astype(int) for name in ("ckpt", "mindir")]
    assert np.abs(drawn[0] - drawn[1]).max() <= 1  # the same codes; pixels equal up to rounding
    from src.api import load  # the API draws what infer.py drew (RGB; OpenCV reads BGR)
    by_api = load(prefix, ["t2i.top_k=4", "t2i.seed=3"]).draw(["green tree"])
    assert by_api.shape == (1,) + drawn[1].shape and np.abs(by_api[0, :, :, ::-1] - drawn[1]).max() <= 1
    assert infer_script.main(["--mindir", str(prefix), "--text", "x", "--out",
                              str(tmp_path / "k.png"), "--set", "t2i.top_k=8"]) == 2

    reports = []
    for source in (["--ckpt", str(dir_pretrained)], ["--mindir", str(prefix)]):
        out = tmp_path / f"eval_{source[0][2:]}.json"
        assert eval_script.main(["--task", "t2i", *source, "--out", str(out), "--set", "t2i.top_k=4",
                                 "t2i.candidates=5", "t2i.batch_size=4"]) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[1]["mindir"] and reports[0]["r_precision"] == reports[1]["r_precision"]
    assert reports[0]["codes_used"] == reports[1]["codes_used"]


def test_refusals(dir_pretrained, coded, tmp_path, capsys):
    """No vision decoder, no dVAE named, or a dVAE of another codebook: one clear line each."""
    import shutil
    import yaml
    from src.config import to_dict
    cfg = run_config(dir_pretrained)
    with pytest.raises(ConfigError, match="trained without DIR"):
        load_trained(run_config(dir_pretrained, "loss.dir=0"), dir_pretrained)
    with pytest.raises(ConfigError, match="names no dVAE"):
        load_trained(run_config(dir_pretrained, "dvae.checkpoint="), dir_pretrained)
    other = tmp_path / "other_dvae"
    shutil.copytree(coded[1], other)
    dvae_cfg = run_config(other, "dvae.codebook_size=32")
    (other / "config.yaml").write_text(yaml.safe_dump(to_dict(dvae_cfg), sort_keys=False))
    capsys.readouterr()
    assert eval_script.main(["--task", "t2i", "--ckpt", str(dir_pretrained), "--set",
                             f"dvae.checkpoint={other}"]) == 2
    assert "has a codebook of 32 codes, but" in capsys.readouterr().err
    assert cfg.dvae.checkpoint  # the run names its dVAE
