import cv2
import numpy as np
import pytest

from src.config import ImageFeatureConfig
from src.data.errors import FeatureError
from src.data.image import fit_codebook, grid_boxes, nearest_centroid, read_image
from tests.stored import image_regions

CFG = ImageFeatureConfig(extractor="grid", grid=2, patch_pixels=4, thumb_size=8)


def test_grid_regions_features_and_boxes(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:20, :30] = (0, 0, 255)   # BGR red, top-left
    img[20:, 30:] = (255, 0, 0)   # BGR blue, bottom-right
    cv2.imwrite(str(tmp_path / "a.png"), img)
    r = image_regions(str(tmp_path / "a.png"), CFG)
    assert r.features.shape == (4, 48) and r.boxes.shape == (4, 7) and r.thumb.shape == (8, 8, 3)
    cells = r.features.reshape(4, 4, 4, 3)
    np.testing.assert_allclose(cells[0].mean((0, 1)), [1, 0, 0], atol=1e-6)   # RGB order
    np.testing.assert_allclose(cells[3].mean((0, 1)), [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(cells[1].mean((0, 1)), [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(r.boxes[1], [0.5, 0, 1, 0.5, 0.5, 0.5, 0.25])
    assert grid_boxes(3)[:, 6].sum() == pytest.approx(1.0)  # cells tile the image


def test_alpha_grey_and_jpeg(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent -> white
    cv2.imwrite(str(tmp_path / "t.png"), rgba)
    assert (read_image(str(tmp_path / "t.png")) == 255).all()
    cv2.imwrite(str(tmp_path / "g.jpg"), np.full((10, 12), 100, np.uint8))
    g = read_image(str(tmp_path / "g.jpg"))
    assert g.shape == (10, 12, 3) and abs(int(g.mean()) - 100) <= 1


def test_corrupt_image(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(FeatureError, match="cannot decode image"):
        image_regions(str(tmp_path / "bad.jpg"), CFG)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(FeatureError, match="cannot decode image"):
        image_regions(str(tmp_path / "empty.png"), CFG)


def test_npz_uniter_form(tmp_path):
    feats = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    scores = np.eye(5, 9, k=2, dtype=np.float32)
    np.savez(tmp_path / "r.npz", features=feats, norm_bb=np.tile([[0.1, 0.2, 0.5, 0.6]], (5, 1)), cls_prob=scores)
    r = image_regions(str(tmp_path / "r.npz"), CFG)
    np.testing.assert_array_equal(r.features, feats)
    np.testing.assert_allclose(r.boxes[0], [0.1, 0.2, 0.5, 0.6, 0.4, 0.4, 0.16], atol=1e-6)
    np.testing.assert_array_equal(r.class_probs, scores)
    assert r.class_probs.argmax(1).tolist() == [2, 3, 4, 5, 6] and r.num_classes == 9 and r.thumb is None
    # absolute xyxy boxes with the image size
    np.savez(tmp_path / "abs.npz", features=feats, boxes=np.tile([[10, 20, 50, 60]], (5, 1)), image_w=100, image_h=200)
    np.testing.assert_allclose(image_regions(str(tmp_path / "abs.npz"), CFG).boxes[0, :4], [0.1, 0.1, 0.5, 0.3])
    capped = image_regions(str(tmp_path / "abs.npz"), ImageFeatureConfig(max_regions=3))
    assert len(capped.features) == len(capped.boxes) == 3


@pytest.mark.parametrize("arrays, msg", [
    ({"features": np.full((2, 4), np.nan, np.float32), "norm_bb": np.zeros((2, 4))}, "'features' contains NaN"),
    ({"features": np.ones((2, 4)), "norm_bb": np.full((2, 4), np.inf)}, "'boxes' contains NaN or Inf"),
    ({"features": np.ones(4), "norm_bb": np.zeros((2, 4))}, r"shape \[N>0, D\], got \[4\]"),
    ({"features": np.ones((2, 4)), "norm_bb": np.zeros((3, 4))}, r"'norm_bb' must have shape \[2, 4\]"),
    ({"features": np.ones((2, 4))}, "no boxes"),
    ({"features": np.ones((2, 4)), "boxes": np.zeros((2, 4))}, "need the image size"),
    ({"features": np.ones((2, 4)), "norm_bb": np.zeros((2, 4)), "cls_prob": np.ones(2)}, "'cls_prob' must have shape"),
    ({"boxes": np.zeros((2, 4))}, "no 'features'"),
])
def test_bad_npz(tmp_path, arrays, msg):
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(FeatureError, match=msg):
        image_regions(str(tmp_path / "x.npz"), CFG)


def test_kmeans_recovers_clusters():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 8)) * 10
    x = np.concatenate([c + rng.standard_normal((50, 8)) * 0.1 for c in centres]).astype(np.float32)
    book = fit_codebook(x, 4, 20, seed=0)
    assign = nearest_centroid(x, book)
    assert all(len(set(assign[i * 50:(i + 1) * 50])) == 1 for i in range(4))  # each cluster one id
    assert len(set(assign)) == 4
    np.testing.assert_array_equal(fit_codebook(x, 4, 20, seed=0), book)  # deterministic
