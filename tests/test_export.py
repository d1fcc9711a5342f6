"""export.py writes MINDIR graphs with a dynamic batch and a sidecar; eval.py and infer.py give the same results on
them as on the Python network."""
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
    return out.with_suffix(".json")


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
    sidecar = export(runs["caption"], "caption", tmp_path / "exports" / "caption")
    meta = json.loads(sidecar.read_text())
    assert sorted(meta["graphs"]) == ["start_audio", "start_image", "start_image_audio", "step"]
    step = meta["graphs"]["step"]
    shapes = {i["name"]: i["shape"] for i in step["inputs"]}
    assert shapes["ids"] == [-1, 1] and shapes["position"] == [] and shapes["memory_keys_0"][0] == -1
    assert shapes["memory_keys_0"][2] == -1 and shapes["self_keys_0"][2] == meta["generate"]["max_len"] - 1
    assert all(g["verified_max_abs_diff"] < 1e-5 for g in meta["graphs"].values())
    assert (sidecar.parent / meta["tokenizer"]["vocab"]).read_text() == (prepared / "vocab.txt").read_text()
    assert meta["generate"]["strategy"] == "beam" and meta["generate"]["candidates_per_step"] == 6

    for task in ("caption", "asr"):
        network, listed = evaluate(tmp_path, f"py_{task}", "--task", task, "--ckpt", str(runs["caption"]),
                                   "--limit", "5")
        graphs, listed_graphs = evaluate(tmp_path, f"mindir_{task}", "--task", task, "--mindir", str(sidecar),
                                         "--limit", "5")
        assert listed == listed_graphs and network["metrics"] == graphs["metrics"]
        assert sum(len(p["prediction"].split()) for p in listed) >= 5  # real text, not empty strings

    image = next((prepared.parent / "img").iterdir())
    capsys.readouterr()
    assert infer_script.main(["--ckpt", str(runs["caption"]), "--image", str(image)]) == 0
    from_network = capsys.readouterr().out
    assert infer_script.main(["--mindir", str(sidecar), "--image", str(image)]) == 0
    assert capsys.readouterr().out == from_network

    # decoding settings are baked into the step graph: other settings are refused, not silently ignored
    assert infer_script.main(["--mindir", str(sidecar), "--image", str(image), "--set", "generate.beam_size=2"]) == 2
    assert "generate.beam_size 2 (exported: 3)" in capsys.readouterr().err


@pytest.mark.e2e
def test_retrieval_and_probe_exports_rank_like_the_network(runs, tmp_path, capsys):
    retrieval = export(runs["retrieval"], "retrieval", tmp_path / "retrieval")
    meta = json.loads(retrieval.read_text())
    assert sorted(meta["graphs"]) == ["embed", "match_image_audio", "match_text_audio", "match_text_image",
                                      "match_text_image_audio"]
    network, _ = evaluate(tmp_path, "py_retrieval", "--task", "retrieval", "--ckpt", str(runs["retrieval"]))
    graphs, _ = evaluate(tmp_path, "mindir_retrieval", "--task", "retrieval", "--mindir", str(retrieval))
    assert timeless(network["directions"]) == timeless(graphs["directions"])

    probe = export(runs["retrieval"], "pretrain", tmp_path / "pretrain")
    assert sorted(json.loads(probe.read_text())["graphs"]) == ["pooled_image_audio", "pooled_text"]
    network, _ = evaluate(tmp_path, "py_probe", "--task", "probe", "--ckpt", str(runs["retrieval"]))
    graphs, _ = evaluate(tmp_path, "mindir_probe", "--task", "probe", "--mindir", str(probe))
    assert network["inputs"] == graphs["inputs"]

    # the batch dimension is dynamic: any batch size runs on the same graph
    embed = ms.nn.GraphCell(ms.load(str(tmp_path / "retrieval.embed.mindir")))
    spec = {i["name"]: i for i in meta["graphs"]["embed"]["inputs"]}
    for batch in (1, 5):
        inputs = [np.zeros([batch] + spec[n]["shape"][1:], spec[n]["dtype"]) for n in spec]
        assert [o.shape[0] for o in embed(*(ms.Tensor(x) for x in inputs))] == [batch] * 3

    capsys.readouterr()
    assert eval_script.main(["--task", "caption", "--mindir", str(retrieval)]) == 2
    assert "exported for task 'retrieval', but eval.py --task caption needs a 'caption' export" in \
        capsys.readouterr().err
    assert eval_script.main(["--task", "probe", "--mindir", str(tmp_path / "nothing.json")]) == 2
    assert "export sidecar not found" in capsys.readouterr().err
