"""Heads fitted to fixed features: the warm start of retrieval fine-tuning and the frozen-feature baseline."""
import mindspore as ms
import numpy as np
import pytest

from src.infer.items import load_items
from src.infer.retrieval import first_stage
from src.metrics.retrieval import recall_summary
from src.model.opt import DataDims
from src.data.records import open_prepared
from src.tasks.linear_retrieval import embedding_features, fit_heads, fit_projections, head_embeddings, item_contents
from src.tasks.retrieval import RetrievalLoss
from src.config import load_config
from tests.conftest import ROOT

RETRIEVAL_TINY = str(ROOT / "config" / "retrieval_tiny.yaml")


def correlated_features(n, rng, latent):
    """Text, image and audio features of n items: different noisy linear views (widths 12, 20, 8) of one latent."""
    maps = [rng.normal(size=(latent.shape[1], d)) for d in (12, 20, 8)]
    return [latent @ w + 0.1 * rng.normal(size=(n, w.shape[1])) for w in maps]


def recall_at_1(queries, candidates):
    _, ranks = first_stage(queries, candidates, np.eye(len(queries), dtype=bool), 1)
    return recall_summary(ranks)["R@1"]


def test_fitted_heads_retrieve_held_out_items_of_a_linear_problem():
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(0)
    train_latent, test_latent = rng.normal(size=(512, 6)), rng.normal(size=(64, 6))
    maps = [rng.normal(size=(6, d)) for d in (12, 20, 8)]
    train = [train_latent @ w + 0.05 * rng.normal(size=(512, w.shape[1])) for w in maps]
    test = [test_latent @ w + 0.05 * rng.normal(size=(64, w.shape[1])) for w in maps]
    present, content = np.ones((512, 3)), np.arange(512 * 3).reshape(512, 3)
    before = fit_heads(train, present, content, 16, 1e-5, 0.07, epochs=0, lr=0.01)  # one step: barely trained
    heads = fit_heads(train, present, content, 16, 1e-5, 0.07, epochs=40, lr=0.01)
    e = head_embeddings(heads, test)
    assert {k: v.shape for k, v in e.items()} == {"text": (64, 16), "image": (64, 16), "audio": (64, 16)}
    np.testing.assert_allclose(np.linalg.norm(e["text"], axis=1), 1.0, rtol=1e-5)
    fitted = recall_at_1(e["text"], e["image"])
    untrained = recall_at_1(*(head_embeddings(before, test)[m] for m in ("text", "image")))
    assert fitted > 80 and fitted > untrained + 40  # chance: 1.6
    assert recall_at_1(e["audio"], e["text"]) > 80
    assert heads.logit_scale.asnumpy()[0] > np.log(1 / 0.07)  # the learnt temperature sharpened


@pytest.mark.e2e
def test_warm_start_fits_the_projections_to_the_frozen_encoder(prepared_complete):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    cfg = load_config(RETRIEVAL_TINY, [f"data.path={prepared_complete}", "retrieval.warm_start_epochs=200"])
    data = open_prepared(cfg.data.path)
    net = RetrievalLoss(cfg.model, cfg.retrieval, DataDims.from_prepared(data, cfg.data))
    encoder_before = net.model.net.encoder.layers[0].attention.query.weight.asnumpy().copy()
    items = load_items(data, cfg.data, "train")

    def text_image_recall():
        net.set_train(False)
        feats = embedding_features(net.model, items, cfg.eval.batch_size)
        embed = [net.model.projections[m](ms.Tensor(f)).asnumpy() for m, f in zip(("text", "image"), feats[:2])]
        return recall_at_1(*embed)
    assert item_contents(items).shape == (len(items), 3)
    random_heads = text_image_recall()
    fit_projections(net, cfg, log=lambda line: None)
    assert text_image_recall() > random_heads + 20  # the 32 training items, chance 3
    np.testing.assert_array_equal(net.model.net.encoder.layers[0].attention.query.weight.asnumpy(), encoder_before)
    assert net.logit_scale.asnumpy()[0] != np.float32(np.log(1 / cfg.retrieval.contrastive_temperature))
