"""export.py writes a bundle of MINDIR graphs with a dynamic batch; eval.py and infer.py give the same results on it
as on the Python network, with the training data and the run gone; a damaged or foreign bundle is refused."""
import json

import mindspore as ms
import numpy as np
import pytest
import yaml

import eval as eval_script
import export as export_script
import infer as infer_script
from conftest import ROOT
from src.config import load_config, to_dict
from src.data.records import open_prepared
from src.model.opt import DataDims

SPEED = ["eval.probe_inputs=[text,image+audio]", "eval.probe_epochs=30",
         "eval.directions=[image->text,text+audio->image]", "generate.batch_size=4"]


def write_run(path, cfg, model):
    """A run directory as train.py leaves it: config.yaml and a checkpoint of `model`'s weights."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    ms.save_checkpoint(model, str(path / "step_00000001.ckpt"))
    return path


@pytest.fixture(scope="module")
def runs(prepared, tmp_path_factory):
    """Freshly initialised caption and retrieval models (no training needed to compare two ways of running them)."""
    from src.tasks.caption import CaptionModel
    from src.model.retrieval import RetrievalModel
    root = tmp_path_factory.mktemp("runs")
    ms.set_seed(0)
    cfg = load_config(str(ROOT / "config" / "caption_tiny.yaml"), [f"data.path={prepared}", "model.dropout=0.0",
                                                                   *SPEED])
    dims = DataDims.from_prepared(open_prepared(prepared), cfg.data)
    caption = CaptionModel(cfg.model, dims)
    sep = open_prepared(prepared).meta["text"]["special_ids"]["[SEP]"]
    bias = caption.dtr_head.bias.asnumpy()
    bias[sep] = -2.0  # a random decoder otherwise ends at once
    caption.dtr_head.bias.set_data(ms.Tensor(bias))
    return {"caption": write_run(root / "caption", cfg, caption),
            "retrieval": write_run(root / "retrieval", cfg, RetrievalModel(cfg.model, dims))}


def export(run, task, out, *sets):
    assert export_script.main(["--task", task, "--ckpt", str(run), "--out", str(out), "--set", *sets]) == 0
    return out


def manifest(bundle) -> dict:
    return json.loads((bundle / "bundle.json").read_text())


def evaluate(tmp_path, name, *args):
    out = tmp_path / name / "report.json"
    out.parent.mkdir()
    assert eval_script.main([*args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    predictions = out.with_name(f"predictions_{report['task']}_{report['split']}.json")
    return report, json.loads(predictions.read_text()) if predictions.exists() else None


def timeless(results: dict) -> dict:
    return {k: {m: v for m, v in r.items() if "seconds" not in m} for k, r in results.items()}


@pytest.mark.e2e
def test_caption_export_decodes_like_the_network(runs, tmp_path, prepared, capsys):
    bundle = export(runs["caption"], "caption", tmp_path / "exports" / "caption")
    meta = manifest(bundle)
    assert sorted(meta["graphs"]) == ["start_audio", "start_image", "start_image_audio", "step"]
    step = meta["graphs"]["step"]
    shapes = {i["name"]: i["shape"] for i in step["inputs"]}
    assert shapes["ids"] == [-1, 1] and shapes["position"] == [] and shapes["memory_keys_0"][0] == -1
    assert shapes["memory_keys_0"][2] == -1 and shapes["self_keys_0"][2] == meta["generate"]["max_len"] - 1
    assert all(g["verified_max_abs_diff"] < 1e-5 for g in meta["graphs"].values())
    assert (bundle / meta["tokenizer"]["vocab"]).read_text() == (prepared / "vocab.txt").read_text()
    assert meta["generate"]["strategy"] == "beam" and meta["generate"]["candidates_per_step"] == 6

    for task in ("caption", "asr"):
        network, listed = evaluate(tmp_path, f"py_{task}", "--task", task, "--ckpt", str(runs["caption"]),
                                   "--limit", "5")
        graphs, listed_graphs = evaluate(tmp_path, f"mindir_{task}", "--task", task, "--mindir", str(bundle),
                                         "--limit", "5")
        assert listed == listed_graphs and network["metrics"] == graphs["metrics"]
        assert sum(len(p["prediction"].split()) for p in listed) >= 5  # real text, not empty strings

    image = next((prepared.parent / "img").iterdir())
    capsys.readouterr()
    assert infer_script.main(["--ckpt", str(runs["caption"]), "--image", str(image)]) == 0
    from_network = capsys.readouterr().out
    assert infer_script.main(["--mindir", str(bundle), "--image", str(image)]) == 0
    assert capsys.readouterr().out == from_network

    # decoding settings are baked into the step graph: other settings are refused, not silently ignored
    assert infer_script.main(["--mindir", str(bundle), "--image", str(image), "--set", "generate.beam_size=2"]) == 2
    assert "generate.beam_size 2 (exported: 3)" in capsys.readouterr().err


@pytest.mark.e2e
def test_retrieval_and_probe_exports_rank_like_the_network(runs, tmp_path, capsys):
    retrieval = export(runs["retrieval"], "retrieval", tmp_path / "retrieval")
    meta = manifest(retrieval)
    assert sorted(meta["graphs"]) == ["embed", "match_image_audio", "match_text_audio", "match_text_image",
                                      "match_text_image_audio"]
    network, _ = evaluate(tmp_path, "py_retrieval", "--task", "retrieval", "--ckpt", str(runs["retrieval"]))
    graphs, _ = evaluate(tmp_path, "mindir_retrieval", "--task", "retrieval", "--mindir", str(retrieval))
    assert timeless(network["directions"]) == timeless(graphs["directions"])

    probe = export(runs["retrieval"], "pretrain", tmp_path / "pretrain")
    assert sorted(manifest(probe)["graphs"]) == ["pooled_image_audio", "pooled_text"]
    network, _ = evaluate(tmp_path, "py_probe", "--task", "probe", "--ckpt", str(runs["retrieval"]))
    graphs, _ = evaluate(tmp_path, "mindir_probe", "--task", "probe", "--mindir", str(probe))
    assert network["inputs"] == graphs["inputs"]

    # the batch dimension is dynamic: any batch size runs on the same graph
    embed = ms.nn.GraphCell(ms.load(str(retrieval / "embed.mindir")))
    spec = {i["name"]: i for i in meta["graphs"]["embed"]["inputs"]}
    for batch in (1, 5):
        inputs = [np.zeros([batch] + spec[n]["shape"][1:], spec[n]["dtype"]) for n in spec]
        assert [o.shape[0] for o in embed(*(ms.Tensor(x) for x in inputs))] == [batch] * 3

    capsys.readouterr()
    assert eval_script.main(["--task", "caption", "--mindir", str(retrieval)]) == 2
    assert "exported for task 'retrieval', but eval.py --task caption needs a 'caption' export" in \
        capsys.readouterr().err
    assert eval_script.main(["--task", "probe", "--mindir", str(tmp_path / "nothing")]) == 2
    assert "bundle not found" in capsys.readouterr().err


@pytest.mark.e2e
def test_a_bundle_runs_without_the_run_and_its_data(runs, prepared, tmp_path, capsys, monkeypatch):
    """A run whose training data is gone (its data_settings carry what its inputs need) is exported; the bundle,
    copied to a folder with a space in its name, captions an image like the network did, from another working
    directory, after the run is deleted. A damaged file, another MindSpore release or a missing extractor package
    is refused in one line naming it."""
    import shutil
    from src.data.lineage import save_settings
    run = shutil.copytree(runs["caption"], tmp_path / "run")
    save_settings(open_prepared(prepared), run)
    image = str(next((prepared.parent / "img").iterdir()))
    capsys.readouterr()
    assert infer_script.main(["--ckpt", str(run), "--image", image]) == 0
    from_network = capsys.readouterr().out
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["path"] = str(tmp_path / "deleted data")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    bundle = export(run, "caption", tmp_path / "exports" / "caption")
    capsys.readouterr()
    assert (bundle / "data_settings" / "meta.json").is_file() and manifest(bundle)["requires"]["packages"] == {}
    moved = shutil.copytree(bundle, tmp_path / "new place" / "caption bundle")
    shutil.rmtree(run)
    shutil.rmtree(bundle)
    monkeypatch.chdir(tmp_path / "new place")
    assert infer_script.main(["--mindir", "caption bundle", "--image", image]) == 0
    assert capsys.readouterr().out == from_network

    def refused(change, phrase):
        damaged = shutil.copytree(moved, tmp_path / f"damaged {len(list(tmp_path.iterdir()))}")
        change(damaged)
        assert infer_script.main(["--mindir", str(damaged), "--image", image]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and phrase in err, err
        return err

    def flip_a_byte(folder):
        graph = folder / "step.mindir"
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 1
        graph.write_bytes(bytes(data))

    def edit_manifest(**changes):
        def edit(folder):
            (folder / "bundle.json").write_text(json.dumps({**manifest(folder), **changes}))
        return edit

    assert "step.mindir is damaged" in refused(flip_a_byte, "copy the bundle again")
    refused(lambda folder: (folder / "data_settings" / "vocab.txt").unlink(), "vocab.txt (listed in")
    refused(edit_manifest(mindspore="1.0.0"), "exported with MindSpore 1.0.0")
    refused(edit_manifest(requires={"packages": {"no-such-extractor-weights": "1.0"}, "modules": ["no_such_runtime"]}),
            "pip install no-such-extractor-weights==1.0 no_such_runtime")


@pytest.mark.e2e
def test_the_api_gives_what_eval_and_infer_give(runs, prepared, tmp_path, capsys):
    """load(RUN) and load(BUNDLE): captions and transcripts of files, their bytes and decoded arrays equal eval.py's
    predictions of the same items and infer.py's lines; embeddings are unit-length, a row the same alone or in a
    batch; search equals infer.py --index; an unreadable input is named."""
    import cv2
    from src.api import load
    from src.data.errors import FeatureError
    report, listed = evaluate(tmp_path, "py_caption", "--task", "caption", "--ckpt", str(runs["caption"]),
                              "--limit", "4")
    images = [str(prepared.parent / "img" / f"{int(p['id'][1:])}.png") for p in listed]
    model = load(runs["caption"])
    captions = model.caption(images)
    assert captions == [p["prediction"] for p in listed] and len(captions) == 4
    assert model.caption([open(f, "rb").read() for f in images]) == captions
    assert model.caption([cv2.imread(f)[:, :, ::-1].copy() for f in images]) == captions
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(images))
    capsys.readouterr()
    assert infer_script.main(["--ckpt", str(runs["caption"]), "--image", str(listing)]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == captions
    bundle = export(runs["caption"], "caption", tmp_path / "caption bundle", "generate.batch_size=4")
    assert load(bundle).caption(images) == captions

    recordings = sorted(str(f) for f in (prepared.parent / "wav").iterdir())[:3]
    transcripts = model.transcribe(recordings)
    assert infer_script.main(["--ckpt", str(runs["caption"]), "--audio", recordings[0]]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == transcripts[0]

    with pytest.raises(FeatureError, match=r"input 1 \(bytes\): cannot decode image"):
        model.caption([images[0], b"not an image"])
    rows = model.caption([images[0], b"not an image"], errors="return")
    assert rows[0] == captions[0] and isinstance(rows[1], FeatureError)

    retrieval = load(runs["retrieval"])
    embedded = retrieval.embed(texts=["red apple", "blue sky"], images=images[:3])
    assert embedded["text"].shape[0] == 2 and embedded["image"].shape[0] == 3
    np.testing.assert_allclose(np.linalg.norm(embedded["image"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(retrieval.embed(images=[images[1]])["image"], embedded["image"][1:2], atol=1e-5)

    index = tmp_path / "photos.index"
    assert infer_script.main(["--task", "search", "--ckpt", str(runs["retrieval"]), "--gallery",
                              str(prepared.parent / "img"), "--index", str(index)]) == 0
    capsys.readouterr()
    assert infer_script.main(["--task", "search", "--index", str(index), "--text", "red apple", "--top", "3"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = retrieval.search(index, ["red apple", "blue sky"], top=3)
    assert len(found) == 2 and found[0] == printed and [r["rank"] for r in found[1]] == [1, 2, 3]
    from src.config import ConfigError
    with pytest.raises(ConfigError, match="the index holds image inputs: ask with another modality"):
        retrieval.search(index, images=[images[0]])
