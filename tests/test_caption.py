"""Text generation: input views, cached decoding equal to uncached, beam search by hand, sampling limits,
initialisation from pre-training, and train.py -> eval.py caption/asr/caption_ia -> infer.py end to end."""
import json
from dataclasses import replace

import mindspore as ms
import numpy as np
import pytest

from src.config import ConfigError, DataConfig, GenerateConfig, ModelConfig
from src.data.masking import AUDIO, IMAGE, TEXT, caption_views
from src.infer.generate import Generator, beam_search, sample_pieces, sample_or_greedy, text_symbols
from src.data.records import open_prepared
from src.model.opt import DataDims
from src.tasks.caption import CaptionLoss, CaptionModel, parse_sources
from src.tasks.pretrain import PretrainLoss
from tests.conftest import ROOT, data_dims, tiny_config, write_image

CAPTION_TINY = str(ROOT / "config" / "caption_tiny.yaml")
SPECIALS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
VOCAB = 40


def test_caption_views_pick_an_input_set_each_row_has():
    present = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]], bool)
    view, weight = caption_views(present, ((IMAGE,), (AUDIO,), (IMAGE, AUDIO)), np.random.default_rng(0))
    np.testing.assert_array_equal(weight, [1, 1, 1, 0, 0])  # no text, or nothing to read: no loss
    assert (view[:, TEXT] == 0).all()
    np.testing.assert_array_equal(view[1], [0, 1, 0])
    np.testing.assert_array_equal(view[2], [0, 0, 1])
    assert (view[present == 0] == 0).all()


def test_parse_sources():
    assert parse_sources(["audio+image", "image"]) == (("image", "audio"), ("image",))
    with pytest.raises(ConfigError, match="text"):
        parse_sources(["text+image"])
    with pytest.raises(ConfigError, match="no input set"):
        parse_sources([])


@pytest.fixture(scope="module")
def random_model():
    ms.set_seed(0)
    cfg = ModelConfig(hidden=32, layers=2, heads=2, intermediate=64, decoder_layers=2, max_positions=64, dropout=0.0)
    model = CaptionModel(cfg, data_dims(VOCAB, 12, 10, 8, 16))
    bias = model.dtr_head.bias.asnumpy()
    bias[SPECIALS["[SEP]"]] = -1.5  # a random decoder otherwise ends at once; this one writes a few pieces first
    model.dtr_head.bias.set_data(ms.Tensor(bias))
    model.set_train(False)
    rng = np.random.default_rng(0)
    b = 4
    inputs = (np.full((b, 12), 2, np.int32), np.ones((b, 12), np.float32),
              rng.standard_normal((b, 4, 12)).astype(np.float32), rng.random((b, 4, 7)).astype(np.float32),
              np.ones((b, 4), np.float32), rng.standard_normal((b, 16, 10)).astype(np.float32),
              np.ones((b, 16), np.float32))
    return model, inputs


def generate(model, inputs, use_cache, **settings):
    cfg = GenerateConfig(max_len=10, batch_size=len(inputs[0]), **settings)
    return Generator(model, ("image", "audio"), cfg, text_symbols(SPECIALS, VOCAB), 64, use_cache)(inputs)


@pytest.mark.parametrize("settings", [dict(strategy="greedy"), dict(strategy="beam", beam_size=3),
                                      dict(strategy="beam", beam_size=3, early_stop=False, length_penalty=0.5),
                                      dict(strategy="sample", top_k=8, top_p=0.9, seed=5)])
def test_cached_decoding_gives_the_pieces_of_uncached_decoding(random_model, settings):
    cached = generate(*random_model, True, **settings)
    assert cached == generate(*random_model, False, **settings)
    assert max(len(p) for p in cached) >= 3  # real sequences, not all ended at once
    banned = {SPECIALS[t] for t in ("[PAD]", "[CLS]", "[MASK]")}
    assert not banned & {t for p in cached for t in p}


def test_beam_width_one_is_greedy(random_model):
    assert generate(*random_model, True, strategy="beam", beam_size=1) == \
        generate(*random_model, True, strategy="greedy")


class TableStepper:
    """A fake decoding step: next-piece log-probabilities from a table keyed by the prefix."""

    def __init__(self, table, rows):
        self.table, self.prefixes = table, [()] * rows

    def __call__(self, parents, new_tokens=None):
        if new_tokens is not None:
            self.prefixes = [self.prefixes[p] + (int(t),) for p, t in zip(parents, new_tokens)]
        probs = np.array([self.table.get(p, [0.98, 0.01, 0.01]) for p in self.prefixes]) + 1e-12
        order = np.argsort(-probs, 1, kind="stable")
        return np.log(np.take_along_axis(probs, order, 1)), order


def test_beam_search_finds_the_likelier_sequence_greedy_misses():
    # pieces: 0 ends, 1 = "a", 2 = "b". Greedy takes "a" (0.6) then ends (0.4): 0.24. "b" (0.4) then ends (0.9): 0.36.
    table = {(): [0.0, 0.6, 0.4], (1,): [0.4, 0.3, 0.3], (2,): [0.9, 0.05, 0.05]}
    cfg = GenerateConfig(strategy="beam", beam_size=2, max_len=5, length_penalty=0.0)
    assert beam_search(TableStepper(table, 2), 1, cfg, end_id=0) == [[2]]
    greedy = GenerateConfig(strategy="greedy", max_len=5)
    assert sample_or_greedy(TableStepper(table, 1), 1, greedy, 0, None) == [[1]]


def test_length_penalty_and_early_stop():
    # "a" end: 0.5 * 0.5 = 0.25 over 2 pieces; "b a" end: 0.5 * 0.9 * 0.5 = 0.225 over 3
    table = {(): [0.0, 0.5, 0.5], (1,): [0.5, 0.25, 0.25], (2,): [0.05, 0.9, 0.05], (2, 1): [0.5, 0.25, 0.25]}

    def run(alpha, early_stop=True):
        cfg = GenerateConfig(strategy="beam", beam_size=2, max_len=6, length_penalty=alpha, early_stop=early_stop)
        return beam_search(TableStepper(table, 2), 1, cfg, end_id=0)[0]

    assert run(0.0) == [1]       # log 0.25 > log 0.225
    assert run(2.0) == [2, 1]    # log(0.225) / 9 > log(0.25) / 4: the penalty favours the longer one
    # without early stop the search goes on while a live beam can still win: "b a a" end (0.11 over 4 pieces) does
    longer = run(2.0, early_stop=False)
    assert longer[:2] == [2, 1] and len(longer) == 3


def test_sampling_stays_inside_top_p():
    values = np.log(np.array([[0.5, 0.3, 0.2]] * 4000))
    indices = np.array([[7, 8, 9]] * 4000)
    picks = sample_pieces(values, indices, GenerateConfig(top_p=0.6), np.random.default_rng(0))
    assert set(picks) == {7, 8}  # 0.5 + 0.3 reaches 0.6: the 0.2 piece is never drawn
    assert abs((picks == 7).mean() - 0.625) < 0.03


def test_generate_config_is_checked(random_model):
    with pytest.raises(ConfigError, match="strategy"):
        generate(*random_model, True, strategy="nucleus")
    with pytest.raises(ConfigError, match="max_len"):
        Generator(random_model[0], ("image",), GenerateConfig(max_len=66), text_symbols(SPECIALS, VOCAB), 64)


def test_caption_model_starts_from_the_pretrained_decoder(prepared, tmp_path):
    cfg = tiny_config()
    dims = DataDims.from_prepared(open_prepared(prepared), DataConfig(max_audio_tokens=16))
    ckpt = tmp_path / "pretrain.ckpt"
    ms.save_checkpoint(PretrainLoss(cfg.model, cfg.loss, dims), str(ckpt))
    caption = CaptionLoss(replace(cfg.model, init_from=str(ckpt)), cfg.caption, dims, (("image",),))
    loaded = set(caption.initialised)
    assert "dtr_head.bias" in loaded and any(n.startswith("net.text_decoder.") for n in loaded)
    assert {p.name for p in caption.trainable_params()} <= loaded  # nothing new: every weight is pre-trained
    with pytest.raises(ConfigError, match="decoder_layers"):
        CaptionModel(replace(cfg.model, decoder_layers=0), dims)


@pytest.mark.e2e
def test_train_then_eval_caption_asr_and_infer(prepared, tmp_path, capsys):
    import eval as eval_py
    import infer as infer_py
    import train as train_py
    run = tmp_path / "caption"
    assert train_py.main(["--config", CAPTION_TINY, "--set", f"data.path={prepared}", f"train.output_dir={run}",
                          "train.epochs=30", "train.lr=0.005"]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 120 and log[-1]["caption"] < 0.5 * log[0]["caption"]

    for task, inputs in (("caption", "image"), ("asr", "audio"), ("caption_ia", "image+audio")):
        assert eval_py.main(["--task", task, "--ckpt", str(run), "--split", "train"]) == 0
        report = json.loads((run / f"eval_{task}_train.json").read_text())
        assert report["inputs"] == inputs and report["strategy"] == "beam"
        assert set(report["metrics"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "ROUGE-L", "WER", "CER"}
        assert report["metrics"]["BLEU-1"] > 20.0, report["metrics"]  # an untrained decoder scores about 5
        predictions = json.loads((run / f"predictions_{task}_train.json").read_text())
        assert len(predictions) == report["items"] and all(p["references"] for p in predictions)
    assert "more audio tokens than data.max_audio_tokens" in capsys.readouterr().out  # tiny tones outlast 16 tokens

    raw = prepared.parent
    assert infer_py.main(["--ckpt", str(run), "--image", str(raw / "img" / "0.png"),
                          "--audio", str(raw / "wav" / "0.wav")]) == 0
    out = capsys.readouterr()
    assert out.out.strip() and "the last 0.16 s are cut" in out.err
    assert infer_py.main(["--ckpt", str(run), "--audio", str(raw / "img" / "0.png")]) == 2
    assert "0.png: cannot read audio" in capsys.readouterr().err


@pytest.mark.e2e
def test_frozen_encoder_and_training_vocabulary_train_the_decoder_only(prepared, tmp_path):
    """The demo's captioning recipe: encoder and input embeddings frozen, the decoder and a head over the pieces of
    the training captions learn; the frozen weights are bit-for-bit those of the start."""
    import eval as eval_py
    import train as train_py
    from src.train.checkpoint import latest_checkpoint, list_checkpoints
    run = tmp_path / "caption"
    assert train_py.main(["--config", CAPTION_TINY, "--set", f"data.path={prepared}", f"train.output_dir={run}",
                          "train.epochs=30", "train.lr=0.005", "caption.output_vocab=train",
                          "train.freeze=[net.encoder., net.embeddings.]", "train.save_every=60",
                          "train.keep_checkpoints=0"]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["caption"] < 0.5 * log[0]["caption"]
    trained = ms.load_checkpoint(str(latest_checkpoint(run)))
    pieces = trained["dtr_head.output_ids"].asnumpy()
    stored = open_prepared(prepared).text_pieces("train")
    assert set(stored) <= set(pieces) and len(pieces) < 0.5 * open_prepared(prepared).meta["text"]["vocab_size"]
    assert trained["dtr_head.table"].shape == (len(pieces), 32)
    halfway = ms.load_checkpoint(str(list_checkpoints(run)[0]))
    frozen = [n for n in trained if n.startswith(("net.encoder.", "net.embeddings.")) and "dropout" not in n]
    assert len(frozen) > 10
    for name in frozen:
        np.testing.assert_array_equal(trained[name].asnumpy(), halfway[name].asnumpy(), err_msg=name)
    for name in ("net.text_decoder.layers.0.ffn.output.weight", "dtr_head.table", "dtr_head.class_bias"):
        assert not np.array_equal(trained[name].asnumpy(), halfway[name].asnumpy()), name
    assert eval_py.main(["--task", "caption", "--ckpt", str(run), "--split", "train"]) == 0
    report = json.loads((run / "eval_caption_train.json").read_text())
    assert report["metrics"]["BLEU-1"] > 20.0
    # on the training split each image's nearest training image is itself: the baseline copies a right caption
    assert report["nearest_neighbour"]["BLEU-1"] > 90.0 and 0.0 <= report["unique_share"] <= 100.0
    evaluates_on_other_sets_with_what_the_run_carries(run, prepared, tmp_path)


def evaluates_on_other_sets_with_what_the_run_carries(run, prepared, tmp_path):
    """A set prepared --like the training data evaluates: with no training split (the nearest-neighbour baseline
    looks up the run's training data), and with a training split of other captions (the decoder's output pieces
    come from the checkpoint, not from that split)."""
    import eval as eval_py
    from src.data.prepare import prepare
    rows = [{"id": f"o{i}", "image": f"img/{i}.png", "text": f"zebra quantum violin {i}", "split": split}
            for i, split in enumerate(["train"] * 3 + ["val"] * 3)]
    (tmp_path / "other" / "img").mkdir(parents=True)
    for i in range(6):
        write_image(tmp_path / "other" / "img" / f"{i}.png", 100 + i)
    (tmp_path / "other" / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, keep in (("val_only", ["val"]), ("own_train", ["train", "val"])):
        manifest = tmp_path / "other" / f"{name}.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] in keep))
        prepare(str(manifest), str(tmp_path / name), tiny_config().prepare, like=str(prepared), log=lambda *a: None)
        out = tmp_path / f"{name}.json"
        assert eval_py.main(["--task", "caption", "--ckpt", str(run), "--data", str(tmp_path / name), "--split",
                             keep[0], "--out", str(out)]) == 0, name
        report = json.loads(out.read_text())
        assert report["items"] == 3 and "nearest_neighbour" in report, name


def test_unique_share_counts_items_whose_text_no_other_item_got():
    from src.tasks.caption_eval import unique_share
    assert unique_share(["a cat", "a dog", "a cat", "a fish"]) == 50.0
    assert unique_share(["same"] * 5) == 0.0


def test_freeze_names_a_prefix_that_exists():
    from src.train.step import trainable
    net = ms.nn.Dense(3, 2)
    with pytest.raises(ConfigError, match="no trainable parameter starts with 'encoder.'"):
        trainable(net, ["encoder."])
    kept = trainable(net, ["bias"])
    assert [p.name for p in kept] == ["weight"] and not net.bias.requires_grad


def test_restricted_output_vocabulary_maps_pieces_and_decodes_only_them(random_model):
    model, inputs = random_model
    cfg = ModelConfig(hidden=32, layers=2, heads=2, intermediate=64, decoder_layers=2, max_positions=64, dropout=0.0)
    pieces = np.array([0, 2, 3, 4, 7, 9, 11, 20], np.int32)
    restricted = CaptionModel(cfg, data_dims(VOCAB, 12, 10, 8, 16), output_ids=pieces)
    restricted.dtr_head.init_table(restricted.net.word_embedding_table())
    np.testing.assert_array_equal(restricted.dtr_head.table.asnumpy(),
                                  restricted.net.word_embedding_table().asnumpy()[pieces])
    head = restricted.dtr_head
    np.testing.assert_array_equal(head.classes_of(ms.Tensor(np.array([[2, 20], [0, 9]], np.int32))).asnumpy(),
                                  [[1, 7], [0, 5]])
    hidden = ms.Tensor(np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32))
    classes, full = restricted.class_log_probs(hidden).asnumpy(), restricted.log_probs(hidden).asnumpy()
    assert classes.shape == (3, len(pieces)) and full.shape == (3, VOCAB)
    np.testing.assert_allclose(np.exp(classes).sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(full[:, pieces], classes)
    assert (np.delete(full, pieces, axis=1) < -1e8).all()
    restricted.set_train(False)
    for strategy in ("greedy", "beam"):
        out = generate(restricted, inputs, True, strategy=strategy)
        assert set(p for row in out for p in row) <= set(pieces.tolist())


@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_candidates_are_the_k_largest_in_order(k):
    from mindspore import nn
    from src.infer.generate import top_candidates

    class Top(nn.Cell):
        def construct(self, x):
            return top_candidates(x, k, groups=64)

    scores = np.random.default_rng(k).standard_normal((5, 1000)).astype(np.float32)
    scores[0, 990:] = 50.0 + np.arange(10)  # the best ones crowded into one block
    values, indices = Top()(ms.Tensor(scores))
    np.testing.assert_allclose(values.asnumpy(), -np.sort(-scores, 1)[:, :k])
    np.testing.assert_array_equal(np.take_along_axis(scores, indices.asnumpy().astype(np.int64), 1), values.asnumpy())


def test_encoder_plus_inputs_memory_appends_the_input_embeddings(random_model):
    """caption.memory encoder+inputs: the decoder reads the encoder output, then the image and audio input
    embeddings (the same cell as the encoder's input), masked as those segments; decoding still runs cached."""
    model, inputs = random_model
    wide = CaptionModel(ModelConfig(hidden=32, layers=2, heads=2, intermediate=64, decoder_layers=2, max_positions=64,
                                    dropout=0.0), data_dims(VOCAB, 12, 10, 8, 16), memory="encoder+inputs")
    ms.load_param_into_net(wide, model.parameters_dict())
    wide.set_train(False)
    tensors = [ms.Tensor(x) for x in inputs]
    for modalities, extra in ((("image",), 4), (("audio",), 16), (("image", "audio"), 20)):
        plain, plain_mask = model.memory(modalities, *tensors)
        states, mask = wide.memory(modalities, *tensors)
        assert states.shape[1] == plain.shape[1] + extra and mask.shape[1] == states.shape[1]
        np.testing.assert_allclose(states.asnumpy()[:, :plain.shape[1]], plain.asnumpy(), rtol=1e-5, atol=1e-5)
    image_part = states.asnumpy()[:, plain.shape[1]:plain.shape[1] + 4]
    np.testing.assert_allclose(image_part, model.net.embeddings["image"](tensors[2], tensors[3]).asnumpy(), rtol=1e-5,
                               atol=1e-5)
    cfg = GenerateConfig(max_len=6, batch_size=4, strategy="greedy")
    symbols = text_symbols(SPECIALS, VOCAB)
    assert Generator(wide, ("image", "audio"), cfg, symbols, 64, True)(inputs) == \
        Generator(wide, ("image", "audio"), cfg, symbols, 64, False)(inputs)
    with pytest.raises(ConfigError, match="caption.memory"):
        CaptionModel(ModelConfig(hidden=32, layers=2, heads=2, intermediate=64, decoder_layers=2),
                     data_dims(VOCAB, 12, 10, 8, 16), memory="inputs")
