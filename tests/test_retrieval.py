"""Retrieval fine-tuning (views, hard negatives, initialisation from pre-training), eval.py retrieval/probe end to
end, and the linear probe on a separable toy problem."""
import json

import mindspore as ms
import numpy as np
from mindspore import ops
import pytest

from src.config import ConfigError, EvalConfig, ModelConfig
from src.data.masking import RETRIEVAL_VIEWS, retrieval_views
from src.data.objectives import RETRIEVAL_COLUMNS
from src.data.records import open_prepared
from src.infer.items import Items
from src.model.opt import OPT, DataDims
from src.tasks.classify import PooledStates, parse_inputs, probe_scores, train_probe
from src.metrics.classification import mean_average_precision
from src.tasks.pretrain import PretrainLoss
from src.model.losses import info_nce
from src.model.retrieval import RetrievalModel
from src.tasks.retrieval import RetrievalLoss
from src.tasks.retrieval_eval import DIRECTIONS, parse_direction
from src.train.checkpoint import CheckpointError, load_weights
from tests.conftest import ROOT, data_dims, tiny_config

RETRIEVAL_TINY = str(ROOT / "config" / "retrieval_tiny.yaml")
NO_DROPOUT = ["model.dropout=0.0"]


def dims(prepared, cfg):
    return DataDims.from_prepared(open_prepared(prepared), cfg.data)


def random_inputs(cfg, dims, b=3, seed=0):
    rng = np.random.default_rng(seed)
    lt, nv, na = cfg.data.max_text_len, cfg.data.max_regions, cfg.data.max_audio_tokens
    ids = rng.integers(1000, 2000, (b, lt)).astype(np.int32)
    text_mask = (np.arange(lt)[None] < np.array([[lt], [5], [1]])[:b]).astype(np.float32)
    image_mask = (np.arange(nv)[None] < np.array([[nv], [2], [3]])[:b]).astype(np.float32)
    audio_mask = (np.arange(na)[None] < np.array([[4], [na], [7]])[:b]).astype(np.float32)
    arrays = (ids, text_mask, rng.normal(size=(b, nv, dims.feature_dims["image"])), rng.random((b, nv, 7)), image_mask,
              rng.normal(size=(b, na, dims.feature_dims["audio"])), audio_mask)
    return [ms.Tensor(a.astype(np.int32 if a.dtype == np.int32 else np.float32)) for a in arrays]


def test_encode_only_equals_encode_with_the_absent_modalities_masked(prepared):
    cfg = tiny_config(*NO_DROPOUT)
    d = dims(prepared, cfg)
    net = OPT(cfg.model, d)
    net.set_train(False)
    inputs = random_inputs(cfg, d)
    lt, nv = cfg.data.max_text_len, cfg.data.max_regions
    text_only_cls = inputs[1].asnumpy() * 0
    text_only_cls[:, 0] = 1
    masked = list(inputs)
    masked[1], masked[6] = ms.Tensor(text_only_cls), inputs[6] * 0  # image alone: text and audio masked out
    full, _ = net.encode(*masked)
    alone, mask = net.encode_only(("image",), *inputs)
    assert alone.shape[1] == 1 + nv
    np.testing.assert_allclose(alone.asnumpy()[:, 0], full.asnumpy()[:, 0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone.asnumpy()[:, 1:], full.asnumpy()[:, lt:lt + nv], rtol=1e-4, atol=1e-5)
    pair, _ = net.encode_only(("text", "audio"), *inputs)
    masked = list(inputs)
    masked[4] = inputs[4] * 0
    full, _ = net.encode(*masked)
    keep = np.r_[0:lt, lt + nv:full.shape[1]]
    np.testing.assert_allclose(pair.asnumpy(), full.asnumpy()[:, keep], rtol=1e-4, atol=1e-5)


def test_retrieval_views_show_present_modalities_and_swap_one_of_them():
    present = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]] * 50, bool)
    view, swap = retrieval_views(present, np.random.default_rng(0))
    assert (view <= present).all() and (swap <= view).all()
    assert (swap.sum(1)[view.sum(1) > 0] == 1).all()
    assert (view[3::4] == 0).all() and (swap[3::4] == 0).all()  # one modality: no matching rows
    shown = {tuple(np.flatnonzero(v)) for v in view[0::4]}
    assert shown == set(RETRIEVAL_VIEWS)  # a tri-modal row can show every view


def test_hardest_negative_is_the_most_similar_allowed_row(prepared):
    cfg = tiny_config(*NO_DROPOUT)
    net = RetrievalLoss(cfg.model, cfg.retrieval, dims(prepared, cfg))
    # four rows, 2-d embeddings per modality; row 0 shows text+image and swaps its image
    text = np.array([[1, 0], [0, 1], [1, 0], [0.8, 0.6]], np.float32)
    image = np.array([[1, 0], [0.9, 0.436], [1, 0], [0.6, 0.8]], np.float32)
    embeddings = ms.Tensor(np.stack([text, image, image]))
    present = np.ones((4, 3), np.float32)
    present[2, 1] = 0  # row 2 has no image: it cannot donate one
    view = np.array([[1, 1, 0]] * 4, np.float32)
    swap = np.array([[0, 1, 0]] * 4, np.float32)
    duplicates = np.eye(4, dtype=np.float32)
    duplicates[0, 3] = duplicates[3, 0] = 1  # rows 0 and 3 share a caption: no negatives of each other
    donors, found = net.hardest_negatives(embeddings, ms.Tensor(present), ms.Tensor(view), ms.Tensor(swap),
                                          ms.Tensor(duplicates))
    assert donors.asnumpy()[1].tolist()[0] == 1  # not itself (1.0), not row 2 (no image), not row 3 (duplicate)
    assert found.asnumpy().tolist() == [1, 1, 1, 1]


def save_pretrain_checkpoint(prepared, path):
    cfg = tiny_config()
    net = PretrainLoss(cfg.model, cfg.loss, dims(prepared, cfg))
    ms.save_checkpoint(net, str(path))
    return net


def test_a_pretrained_checkpoint_initialises_retrieval(prepared, tmp_path):
    pretrained = save_pretrain_checkpoint(prepared, tmp_path / "pre.ckpt")
    cfg = tiny_config("model.decoder_layers=0", f"model.init_from={tmp_path / 'pre.ckpt'}")
    net = RetrievalLoss(cfg.model, cfg.retrieval, dims(prepared, cfg))
    for name in ("net.encoder.layers.1.ffn.output.weight", "net.embeddings.audio.feature.weight", "match_head.bias"):
        np.testing.assert_array_equal(net.parameters_dict()[name].asnumpy(),
                                      pretrained.parameters_dict()[name].asnumpy())
    with pytest.raises(CheckpointError, match="projections.*another task"):  # a pre-trained model cannot rank yet
        load_weights(RetrievalModel(cfg.model, dims(prepared, cfg)), tmp_path / "pre.ckpt",
                     ("net.", "match_head.", "projections."))
    wider = tiny_config("model.decoder_layers=0", "model.intermediate=128")
    with pytest.raises(CheckpointError, match="different model config"):
        load_weights(RetrievalModel(wider.model, dims(prepared, wider)), tmp_path / "pre.ckpt")


def test_direction_and_probe_input_names():
    assert parse_direction("text+audio->image") == (("text", "audio"), ("image",))
    for bad in ("text->text", "text->video", "text-image"):
        with pytest.raises(ConfigError):
            parse_direction(bad)
    assert parse_inputs("audio+text") == ("text", "audio")
    for bad in ("TA", "text+video", "text+text"):  # the letters of earlier versions are refused in one line
        with pytest.raises(ConfigError, match="eval.probe_inputs: .* must join text, image, audio with '\\+'"):
            parse_inputs(bad)


def test_the_probe_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32) * 3 + 5  # unstandardised on purpose
    labels = np.stack([x[:, 0] > 5, x[:, 1] + x[:, 2] > 10, x[:, 3] < 4], 1).astype(np.float32)
    ms.set_context(mode=ms.GRAPH_MODE)
    layer = train_probe(x[:400], labels[:400], EvalConfig(probe_epochs=300, probe_lr=0.05))
    result = mean_average_precision(probe_scores(layer, x[400:]), labels[400:])
    assert result["mAP"] > 97 and result["classes"] == 3
    shuffled = mean_average_precision(probe_scores(layer, x[400:]), labels[rng.permutation(200) + 400])
    assert shuffled["mAP"] < 70


def test_probe_features_average_each_segment_apart():
    """The probe's features of a combination: per modality, the mean encoder output over that segment's valid
    positions (text with [CLS]), side by side; padding positions do not count."""
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    net = OPT(ModelConfig(hidden=16, layers=1, heads=2, intermediate=32, decoder_layers=0, dropout=0.0),
              data_dims(30, 12, 10, 8, 6))
    net.set_train(False)
    rng = np.random.default_rng(0)
    b = 3
    text_mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], np.float32)
    audio_mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]], np.float32)
    inputs = [rng.integers(3, 30, (b, 5)).astype(np.int32), text_mask,
              rng.standard_normal((b, 4, 12)).astype(np.float32), rng.random((b, 4, 7)).astype(np.float32),
              np.ones((b, 4), np.float32), rng.standard_normal((b, 6, 10)).astype(np.float32), audio_mask]
    tensors = [ms.Tensor(x) for x in inputs]
    states = net.encode_only(("text", "image", "audio"), *tensors)[0].asnumpy()
    features = PooledStates(net, ("text", "image", "audio"))(*tensors).asnumpy()
    assert features.shape == (b, 48)

    def mean(part, mask):
        return (part * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    expected = np.concatenate([mean(states[:, :5], text_mask), states[:, 5:9].mean(1),
                               mean(states[:, 9:], audio_mask)], 1)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    assert PooledStates(net, ("image",))(*tensors).shape == (b, 16)


def test_probe_training_items_are_drawn_across_the_split():
    """eval.probe_train_samples draws items from the whole split, not its first n: a split grouped by source (here
    10 labels in blocks of 100 items) then still shows the probe every label."""
    labels = np.eye(10, dtype=np.float32)[np.repeat(np.arange(10), 100)]
    items = Items({"text_ids": np.arange(1000)[:, None]}, np.arange(1000), labels)
    drawn = items.sample(100, seed=0)
    assert len(drawn) == 100 and len(np.unique(drawn.index)) == 100 and np.all(np.diff(drawn.index) > 0)
    assert drawn.labels.any(0).all()  # the first 100 items carry one label
    np.testing.assert_array_equal(drawn.inputs["text_ids"][:, 0], drawn.index)
    np.testing.assert_array_equal(items.sample(100, seed=0).index, drawn.index)
    assert items.sample(0, seed=0) is items and items.sample(5000, seed=0) is items


@pytest.mark.e2e
def test_train_then_eval_retrieval_and_probe(prepared, tmp_path, capsys):
    import eval as eval_py
    import train as train_py
    run = tmp_path / "retrieval"
    # no dropout: the first step's loss then measures the warm-started heads, not the dropout masks (which depend
    # on how many Dropout cells the test process built before this one)
    assert train_py.main(["--config", RETRIEVAL_TINY, "--set", f"data.path={prepared}",
                          f"train.output_dir={run}", "train.epochs=3", "retrieval.warm_start_epochs=100",
                          "model.dropout=0.0"]) == 0
    assert "warm start: projections fitted to what they read under the frozen encoder, 32 training items" in \
        capsys.readouterr().out
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    # warm-started heads already rank the batch: below ln(8), the loss of heads that do not
    assert len(log) == 12 and log[0]["contrastive"] < np.log(8)

    # k covering the gallery: the two-stage ranking is the all-pairs cross-encoder's
    assert eval_py.main(["--task", "retrieval", "--ckpt", str(run), "--full", "--set", "eval.rerank_k=100"]) == 0
    report = json.loads((run / "eval_retrieval_val.json").read_text())
    assert list(report["directions"]) == list(DIRECTIONS) and len(DIRECTIONS) == 8  # the data has all three
    for name, r in report["directions"].items():
        query, cand = parse_direction(name)
        assert r["two_stage"] == r["full"], name
        assert 1 <= r["two_stage"]["median_rank"] <= r["candidates"]
        assert r["chance"]["R@1"] == pytest.approx(100 / r["candidates"])
    assert report["directions"]["text->image"]["candidates"] == 7  # the val items that have an image
    assert "frozen R@1" in capsys.readouterr().out  # the frozen-feature baseline beside every direction
    assert all(0 <= r["baseline"]["R@1"] <= r["baseline"]["R@10"] <= 100 for r in report["directions"].values())

    out = tmp_path / "probe.json"
    assert eval_py.main(["--task", "probe", "--ckpt", str(run), "--out", str(out)]) == 0
    probe = json.loads(out.read_text())
    assert list(probe["inputs"]) == ["text", "image", "audio", "text+image", "text+audio", "image+audio",
                                     "text+image+audio"]
    assert all(0 < r["mAP"] <= 100 and r["classes"] == 3 for r in probe["inputs"].values())
    assert probe["train_items"] == 32

    bad = eval_py.main(["--task", "retrieval", "--ckpt", str(tmp_path / "missing")])
    assert bad == 2
    metrics_only_scores_fewer_pairs_for_the_same_ranks(run, prepared)


def metrics_only_scores_fewer_pairs_for_the_same_ranks(run, prepared):
    """The evaluation's shortcuts (rerank only queries with a correct candidate in their top k, score each distinct
    pair of inputs once) give the ranks of scoring every query's top k, running the cross-encoder on fewer rows."""
    from src.infer.items import load_items
    from src.tasks import registry
    from src.tasks.retrieval_eval import RetrievalEvaluator
    cfg, graphs = registry.open_graphs(registry.get("retrieval", "evaluate"), str(run), None, None,
                                       ["eval.rerank_k=3"])
    items = load_items(open_prepared(prepared), cfg.data, "val")

    class Counting(dict):
        rows = 0

        def __getitem__(self, name):
            cell = graphs[name]
            if name == "embed":
                return cell

            def counted(*inputs):
                Counting.rows += inputs[0].shape[0]
                return cell(*inputs)
            return counted

    seen = {}
    for metrics_only in (True, False):
        Counting.rows = 0
        evaluator = RetrievalEvaluator(Counting(), items, cfg.eval, metrics_only=metrics_only)
        ranks = [evaluator.evaluate(d)["two_stage"] for d in DIRECTIONS]
        seen[metrics_only] = ranks, Counting.rows
    assert seen[True][0] == seen[False][0]
    assert seen[True][1] < seen[False][1]


def test_the_retrieval_head_has_no_batch_norm_and_embeds_alike_in_training_and_evaluation(prepared):
    cfg = tiny_config(*NO_DROPOUT)
    model = RetrievalModel(cfg.model, dims(prepared, cfg))
    assert not [name for name, cell in model.cells_and_names() if "BatchNorm" in type(cell).__name__]
    inputs = random_inputs(cfg, dims(prepared, cfg))
    model.set_train(True)
    trained = model.embed("image", *inputs).asnumpy()
    model.set_train(False)
    np.testing.assert_allclose(model.embed("image", *inputs).asnumpy(), trained, rtol=1e-5, atol=1e-6)


def info_nce_reference(a, b, scale, allowed):
    """Symmetric InfoNCE in numpy over rows i, with only the columns allowed[i] (its own included) competing."""
    logits = scale * a @ b.T

    def one_way(lg, ok):
        lg = np.where(ok, lg, -np.inf)
        return np.mean([np.log(np.exp(lg[i][ok[i]]).sum()) - lg[i, i] for i in range(len(lg))])
    return (one_way(logits, allowed) + one_way(logits.T, allowed.T)) / 2


def test_duplicate_content_is_no_negative_and_the_temperature_is_learnt(prepared):
    from src.model.losses import same_content
    cfg = tiny_config(*NO_DROPOUT)
    net = RetrievalLoss(cfg.model, cfg.retrieval, dims(prepared, cfg))
    rng = np.random.default_rng(0)
    e = rng.normal(size=(3, 4, 5)).astype(np.float32)
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    present = np.ones((4, 3), np.float32)
    content = np.array([[1, 7, 20], [2, 7, 21], [3, 8, 22], [3, 9, 23]], np.int32)  # rows 0, 1 share the image,
    same = same_content(ms.Tensor(content), ms.Tensor(present))                      # rows 2, 3 the caption
    np.testing.assert_array_equal(same.asnumpy()[1], [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    scale = ms.Tensor(1 / 0.07, ms.float32)
    got = info_nce(net.contrastive.ce, ms.Tensor(e), 0, 1, ms.Tensor(present), same, scale).asnumpy()
    allowed = np.ones((4, 4), bool)
    allowed[0, 1] = allowed[1, 0] = allowed[2, 3] = allowed[3, 2] = False
    np.testing.assert_allclose(got, info_nce_reference(e[0], e[1], 1 / 0.07, allowed), rtol=1e-5)
    assert abs(got - info_nce_reference(e[0], e[1], 1 / 0.07, np.ones((4, 4), bool))) > 1e-3  # the old loss

    assert net.logit_scale.requires_grad
    np.testing.assert_allclose(np.exp(net.logit_scale.asnumpy()), 1 / 0.07, rtol=1e-5)  # CLIP's initial scale
    def loss_of(log_scale):
        return info_nce(net.contrastive.ce, ms.Tensor(e), 0, 1, ms.Tensor(present), same, ops.exp(log_scale))
    grad = ms.grad(loss_of)(ms.Tensor(np.log(1 / 0.07), ms.float32))
    assert abs(float(grad.asnumpy())) > 1e-4


def test_the_pipeline_fingerprints_identical_inputs_alike(prepared):
    from src.data.objectives import Retrieval
    from src.data.padding import READ_COLUMNS
    from src.data.pipeline import Collator
    from src.data.records import open_prepared as open_data
    import mindspore.dataset as ds
    data = open_data(prepared)
    cfg = tiny_config(f"data.path={prepared}")
    rows = list(ds.MindDataset(data.files("train"), columns_list=READ_COLUMNS, shuffle=False).create_tuple_iterator(
        num_epochs=1, output_numpy=True))
    picked = [rows[0], rows[1], rows[0], rows[2]]  # row 0 twice
    columns = [[r[k] for r in picked] for k in range(len(READ_COLUMNS))]
    batch = Collator(data, cfg.data, 0, Retrieval(data, cfg.data))(*columns, None)  # the dataset's batch info
    content = dict(zip(RETRIEVAL_COLUMNS, batch))["content"]
    assert content.dtype == np.int32 and content.shape == (4, 3)
    assert (content[0] == content[2]).all()
    assert (content[0] != content[1]).all() and (content[0] != content[3]).all()


def test_eval_counts_every_item_with_the_same_content_correct():
    from src.infer.items import Items
    from src.tasks.retrieval_eval import correct_candidates
    # 0, 1: one emoji's image with its English and Chinese captions; 2, 3: two drawings with the same caption
    text = np.array([[101, 5, 102], [101, 6, 102], [101, 7, 102], [101, 7, 102], [101, 8, 102]], np.int32)
    image = np.array([0, 0, 1, 2, 3], np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    audio = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 4), np.float32)  # five recordings
    inputs = {"text_ids": text, "text_mask": np.ones(text.shape, np.float32), "image_feat": image,
              "image_boxes": np.zeros((5, 2, 7), np.float32), "image_mask": np.ones((5, 2), np.float32),
              "audio_feat": audio, "audio_mask": np.ones((5, 2), np.float32)}
    items = Items(inputs, np.arange(5), np.zeros((5, 1), np.float32))
    from src.infer.items import content_codes

    def positives(query, cand):  # every item asks, every item is a candidate
        codes = tuple(content_codes(items, side) for side in (query, cand))
        return correct_candidates(codes, codes)
    sets = lambda m: [set(np.flatnonzero(r).tolist()) for r in m]  # noqa: E731
    # image->text: either caption of the image; a drawing's caption shared with another drawing
    assert sets(positives(("image",), ("text",))) == [{0, 1}, {0, 1}, {2, 3}, {2, 3}, {4}]
    # text->image: the same image file (both emoji rows), or a drawing with the same caption
    assert sets(positives(("text",), ("image",))) == [{0, 1}, {0, 1}, {2, 3}, {2, 3}, {4}]
    # text->audio: the recording of that caption (the other language's recording is not the caption spoken)
    assert sets(positives(("text",), ("audio",))) == [{0}, {1}, {2, 3}, {2, 3}, {4}]
    assert sets(positives(("audio",), ("image",))) == [{0, 1}, {0, 1}, {2}, {3}, {4}]


def hand_made_items():
    """Four images with two captions each (8 items, no audio) and embeddings chosen by hand: the image of item
    2i + j is image i, shown by its embedding e_i; caption c's embedding is CAPTIONS[c]."""
    image = np.repeat(np.arange(4, dtype=np.float32), 2)[:, None, None] * np.ones((1, 2, 3), np.float32)
    text = np.stack([np.full(8, 101), np.arange(8) + 10, np.full(8, 102)], 1).astype(np.int32)
    inputs = {"text_ids": text, "text_mask": np.ones(text.shape, np.float32), "image_feat": image,
              "image_boxes": np.zeros((8, 2, 7), np.float32), "image_mask": np.ones((8, 2), np.float32),
              "audio_feat": np.zeros((8, 2, 4), np.float32), "audio_mask": np.zeros((8, 2), np.float32)}
    return Items(inputs, np.arange(8), np.zeros((8, 1), np.float32))


E = np.eye(4, dtype=np.float32)
CAPTIONS = np.stack([E[0], E[1] + 0.5 * E[0], E[1], E[1],
                     E[2], E[2] + 1.2 * E[3], E[2] + 0.5 * E[3], E[2] + 0.5 * E[3]])


class HandMadeGraphs(dict):
    """`embed`: the embeddings above; every match cell scores 0 (with rerank_k 1 the first stage decides)."""

    def __getitem__(self, name):
        if name == "embed":
            return lambda text, tm, image, boxes, im, audio, am: (
                ms.Tensor(CAPTIONS[text.asnumpy()[:, 1] - 10]), ms.Tensor(E[image.asnumpy()[:, 0, 0].astype(int)]),
                ms.Tensor(np.zeros((text.shape[0], 4), np.float32)))
        return lambda *inputs: ms.Tensor(np.zeros(inputs[0].shape[0], np.float32))


def test_published_protocol_by_hand():
    """Each image asks once and is one candidate; an image is found when any of its captions is; RSUM and the mean
    over folds of images, against ranks worked out by hand from the embeddings:
    text->image ranks 1 2 1 1 1 2 2 2, image->text 1 1 1 2;
    fold {0, 1}: t->i 1 2 1 1, i->t 1 1; fold {2, 3}: t->i 1 2 2 2, i->t 1 2."""
    from src.tasks.retrieval_eval import RetrievalEvaluator, published_protocol
    cfg = EvalConfig(rerank_k=1, batch_size=4, fold_images=2)
    evaluator = RetrievalEvaluator(HandMadeGraphs(), hand_made_items(), cfg)
    directions = {d: evaluator.evaluate(d) for d in ("image->text", "text->image")}
    assert (directions["image->text"]["queries"], directions["image->text"]["candidates"]) == (4, 8)
    assert (directions["text->image"]["queries"], directions["text->image"]["candidates"]) == (8, 4)
    protocol = published_protocol(evaluator, directions, cfg.fold_images)
    whole, folds = protocol["all"], protocol["folds"]
    assert whole["image->text"] == {"R@1": 75.0, "R@5": 100.0, "R@10": 100.0}
    assert whole["text->image"] == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0}
    assert whole["RSUM"] == 525.0 and (whole["images"], whole["texts"]) == (4, 8)
    assert folds["count"] == 2 and folds["images"] == 2
    assert folds["image->text"]["R@1"] == 75.0 and folds["text->image"]["R@1"] == 50.0  # (100+50)/2, (75+25)/2
    assert folds["RSUM"] == 525.0  # fold RSUMs 575 and 475
    assert "folds" not in published_protocol(evaluator, directions, 4)  # one fold: the whole split is the protocol


def test_directions_and_probe_inputs_default_to_what_the_data_has():
    from src.tasks.classify import probe_input_sets
    from src.tasks.retrieval_eval import directions_for
    assert directions_for([], ("text", "image"), "x") == ["image->text", "text->image"]
    assert len(directions_for([], ("text", "image", "audio"), "x")) == 8
    with pytest.raises(ConfigError, match="'text->audio' needs audio, which split 'val' of d does not have"):
        directions_for(["image->text", "text->audio"], ("text", "image"), "split 'val' of d")
    assert probe_input_sets([], ("text", "image"), "x") == ["text", "image", "text+image"]
    assert len(probe_input_sets([], ("text", "image", "audio"), "x")) == 7
    assert probe_input_sets(["image+text"], ("text", "image"), "x") == ["text+image"]  # the model's order
    with pytest.raises(ConfigError, match="'text\\+audio' needs audio"):
        probe_input_sets(["text", "audio+text"], ("text", "image"), "x")
