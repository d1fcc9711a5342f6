"""Does a caption model read its image? Teacher-forced loss with the own, another row's and no image features, and how
alike the encoder makes different images.

    python bench/caption_diagnostics.py --ckpt runs/demo/caption [--config config/caption_demo.yaml]

On the first shuffled training batch (image input only, evaluation mode): the loss with each row's own image, with the
next row's image, and with zero features; then the mean pooled cosine between the rows' states at the image embedding
and after each encoder layer, beside that of the input features. A decoder that reads the image does clearly better
with its own; an encoder whose states are all alike (cosine near 1) gives it nothing to read.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mindspore as ms  # noqa: E402
import numpy as np  # noqa: E402

from src.config import load_config  # noqa: E402
from src.model.layers import padding_bias  # noqa: E402
from src.tasks.registry import training  # noqa: E402
from src.train.checkpoint import load_weights  # noqa: E402
from src.train.trainer import set_mode  # noqa: E402


def pooled_cosine(states: np.ndarray, mask: np.ndarray) -> float:
    """Mean cosine between different rows of states [B, L, H] averaged over their positions where mask [B, L] is 1."""
    pooled = (states * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
    pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
    cos = pooled @ pooled.T
    return float(cos[~np.eye(len(cos), dtype=bool)].mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a caption run directory or checkpoint")
    p.add_argument("--config", default="config/caption_demo.yaml", help="the recipe it was trained with")
    args = p.parse_args(argv)
    cfg = load_config(args.config, ["caption.inputs=[image]", "model.init_from="])
    set_mode("graph")
    net, make_dataset, _ = training("caption").build(cfg)
    load_weights(net, args.ckpt, ("net.", "dtr_head."))
    net.set_train(False)
    batch = [x.asnumpy() for x in next(make_dataset(0, 0).create_tuple_iterator(num_epochs=1))]

    def loss(columns) -> float:
        return float(net(*[ms.Tensor(x) for x in columns])[0].asnumpy())

    other = list(batch)
    for i in (2, 3, 4):  # image_feat, image_boxes, image_mask of the next row
        other[i] = np.roll(batch[i], 1, axis=0)
    none = list(batch)
    none[2] = np.zeros_like(batch[2])
    print(f"teacher-forced loss: own image {loss(batch):.3f}, another row's {loss(other):.3f}, "
          f"none {loss(none):.3f}")

    image_feat, image_boxes, image_mask = batch[2], batch[3], batch[4]
    print(f"pooled cosine between rows: input features {pooled_cosine(image_feat, image_mask):.3f}")
    x = net.net.embeddings["image"](ms.Tensor(image_feat), ms.Tensor(image_boxes))
    print(f"  image embedding {pooled_cosine(x.asnumpy(), image_mask):.3f}")
    cls = net.net.embeddings["text"](ms.Tensor(batch[0][:, :1]))
    x = ms.ops.concat((cls, x), axis=1)
    bias = padding_bias(ms.Tensor(np.concatenate([batch[1][:, :1], image_mask], 1)))
    for i, layer in enumerate(net.net.encoder.layers):
        x = layer(x, bias)
        print(f"  after encoder layer {i + 1} {pooled_cosine(x.asnumpy()[:, 1:], image_mask):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
