"""Linear-probe multi-label classification (the paper's Table 2): the pre-trained model stays frozen; the cross-modal
encoder output for one input combination, average-pooled, feeds one linear layer trained on the manifest's labels.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import Config, ConfigError, EvalConfig
from src.infer.graphs import VERIFY_ROWS, Graph, GraphSet, pooled_graph
from src.infer.items import Items, load_items, run_batched
from src.metrics.classification import mean_average_precision
from src.modality import INPUT_COLUMNS, MODALITIES, parse_input_set
from src.model.opt import OPT, masked_mean
from src.tasks.registry import Task, register

def probe_input_sets(requested: Sequence[str], present: Sequence[str], where: str) -> List[str]:
    """eval.probe_inputs as asked, each in the model's order ('audio+text' -> 'text+audio') and checked against the
    modalities `present` in the data (one line naming what is missing), or, when none is asked, every combination of
    them (text, image, audio, text+image, ..., text+image+audio on tri-modal data)."""
    if requested:
        sets = [parse_inputs(name) for name in requested]
        for modalities in sets:
            missing = [m for m in modalities if m not in present]
            if missing:
                raise ConfigError(f"eval.probe_inputs: '{'+'.join(modalities)}' needs {' and '.join(missing)}, which "
                                  f"{where} does not have (it has: {', '.join(present)})")
        return ["+".join(modalities) for modalities in sets]
    have = [m for m in MODALITIES if m in present]
    return ["+".join(c) for k in range(1, len(have) + 1) for c in itertools.combinations(have, k)]


def parse_inputs(name: str) -> Tuple[str, ...]:
    """'audio+text' -> ('text', 'audio'): the project's input-set notation (src/modality.py)."""
    try:
        return parse_input_set(name, "eval.probe_inputs")
    except ValueError as e:
        raise ConfigError(str(e)) from None


class PooledStates(nn.Cell):
    """The cross-modal encoder output of rows shown with `modalities`, averaged over the valid positions of each
    modality's segment, the averages side by side ([B, H x len(modalities)]; the text segment includes [CLS]).
    Per segment, not over the whole sequence: there the 24 text positions weigh less than the 49 regions and 64
    audio frames beside them, and text+image+audio probed below text alone (demo: 29.0 against 34.8 mAP)."""

    def __init__(self, net: OPT, modalities: Tuple[str, ...]):
        super().__init__(auto_prefix=False)
        self.net, self.modalities = net, modalities

    def construct(self, *inputs):
        parts, masks = self.net.segments(self.modalities, *inputs)
        states, _ = self.net.encode_segments(parts, masks)
        means, start = (), 0
        for i, mask in enumerate(masks):
            length = mask.shape[1]
            if i > 0 or "text" in self.modalities:  # not [CLS] alone
                means = means + (masked_mean(states[:, start:start + length], mask),)
            start = start + length
        return ops.concat(means, axis=1)


def probe_features(cell: PooledStates, items: Items, batch_size: int) -> np.ndarray:
    return run_batched(cell, len(items), batch_size, lambda rows: items.compose({"text": rows}))[0]


class ProbeLoss(nn.Cell):
    def __init__(self, features: int, classes: int):
        super().__init__()
        # zeros: the problem is convex, and the fit then depends on the features alone (not on the global random state)
        self.linear = nn.Dense(features, classes, weight_init="zeros", bias_init="zeros")
        self.bce = nn.BCEWithLogitsLoss()

    def construct(self, x, y):
        return self.bce(self.linear(x), y)


def train_probe(train_x: np.ndarray, train_y: np.ndarray, cfg: EvalConfig) -> nn.Dense:
    """One linear layer fitted by full-batch Adam on standardised features (the returned layer includes the
    standardisation)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    net = ProbeLoss(train_x.shape[1], train_y.shape[1])
    step = nn.TrainOneStepCell(net, nn.Adam(net.trainable_params(), cfg.probe_lr,
                                            weight_decay=cfg.probe_weight_decay))
    x, y = ms.Tensor(((train_x - mean) / std).astype(np.float32)), ms.Tensor(train_y.astype(np.float32))
    for _ in range(cfg.probe_epochs):
        step(x, y)
    # fold the standardisation into the layer: w (x - mean) / std + b
    w, b = net.linear.weight.asnumpy(), net.linear.bias.asnumpy()
    folded = nn.Dense(train_x.shape[1], train_y.shape[1])
    folded.weight.set_data(ms.Tensor((w / std).astype(np.float32)))
    folded.bias.set_data(ms.Tensor((b - (w / std) @ mean).astype(np.float32)))
    return folded


def probe_scores(layer: nn.Dense, x: np.ndarray) -> np.ndarray:
    return layer(ms.Tensor(x.astype(np.float32))).asnumpy()


def chance_map(labels: np.ndarray) -> float:
    """mAP of random scores: each class's AP is then its share of positive items, on average."""
    present = labels.any(0)
    return 100.0 * float(labels[:, present].mean(0).mean())


def evaluate_probe(graphs, train: Items, test: Items, cfg: EvalConfig, input_sets: Sequence[str],
                   log=print) -> Dict[str, dict]:
    """mAP on `test` of a linear probe per input combination of `input_sets`, on the features of the
    `pooled_<modalities>` cells of `graphs` (a pre-trained checkpoint's or its export's)."""
    if not test.labels.any():
        raise ConfigError("the evaluation split has no labels: the probe needs the manifest's 'labels'")
    results = {}
    for name in input_sets:
        cell = graphs[pooled_graph(parse_inputs(name))]  # one cell per combination: it compiles once
        train_x = probe_features(cell, train, cfg.batch_size)
        test_x = probe_features(cell, test, cfg.batch_size)
        layer = train_probe(train_x, train.labels, cfg)
        results[name] = {**mean_average_precision(probe_scores(layer, test_x), test.labels),
                         "chance_mAP": chance_map(test.labels > 0)}
        log(f"probe {name:<16} mAP {results[name]['mAP']:.2f} (chance {results[name]['chance_mAP']:.2f})")
    return results


def probe_table(results: Dict[str, dict]) -> List[str]:
    lines = [f"{'inputs':<16} {'mAP':>6} {'chance':>7} {'classes':>8}", "-" * 40]
    lines += [f"{k:<16} {r['mAP']:>6.2f} {r['chance_mAP']:>7.2f} {r['classes']:>8}" for k, r in results.items()]
    return lines


def probe_graphs(cfg: Config, ckpt) -> GraphSet:
    """`pooled_<modalities>` (pooled_text_image_audio) for each input set of eval.probe_inputs: the per-segment means
    of the cross-modal encoder output (PooledStates) of a checkpoint's OPT network."""
    from src.tasks.retrieval import load_trained
    model, data = load_trained(cfg, ckpt, ("net.",))
    names = probe_input_sets(cfg.eval.probe_inputs, data.modalities(), str(data.root))
    sets = [parse_inputs(name) for name in names]
    return GraphSet({pooled_graph(s): Graph(PooledStates(model.net, s), INPUT_COLUMNS, ["features"],
                                            lambda items: items.compose({"text": np.arange(VERIFY_ROWS)}))
                     for s in sets})


def evaluate_run(run) -> List[str]:
    """eval.py --task probe: a linear layer per input set, trained on eval.probe_train_samples items drawn from the
    training split, mAP on the evaluated split."""
    cfg, data = run.cfg, run.data()
    test = load_items(data, cfg.data, run.split)
    input_sets = probe_input_sets(cfg.eval.probe_inputs, data.modalities(run.split),
                                  f"split '{run.split}' of {data.root}")
    training = run.training_data("probe")
    if training is None:
        raise ConfigError("the probe fits on training items: pass --train-split SPLIT of the evaluated set, or keep "
                          f"the run's training data at {run.graphs.trained_on}")
    train_data, train_split = training
    train = load_items(train_data, cfg.data, train_split).sample(cfg.eval.probe_train_samples, cfg.train.seed)
    run.report.update(items=len(test), train_split=train_split, train_items=len(train))
    run.report["inputs"] = evaluate_probe(run.graphs, train, test, cfg.eval, input_sets, run.log)
    return probe_table(run.report["inputs"])


register(Task("probe", __name__, evaluate=evaluate_run, graphs_of="pretrain",
              help="linear-probe mAP per input combination (a pre-training run, frozen)"))
