"""Images as files: float images to bytes, grids of images (contact sheets) and PNG writing, each file written under
a temporary name and then renamed."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An image in [0, 1] -> uint8 pixels."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def image_grid(rows) -> np.ndarray:
    """Rows of images [N, S, S, 3] in [0, 1] -> one RGB uint8 picture, rows stacked, 2-pixel white gaps."""
    gap = 2
    n, s = rows[0].shape[:2]
    sheet = np.full((len(rows) * (s + gap) + gap, n * (s + gap) + gap, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for i, image in enumerate(images):
            y, x = gap + r * (s + gap), gap + i * (s + gap)
            sheet[y:y + s, x:x + s] = to_uint8(image)
    return sheet


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB picture under a temporary name, then rename."""
    path = Path(path)
    partial = path.with_name(f".partial-{path.name}")
    if not cv2.imwrite(str(partial), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"cannot write {path}")
    partial.replace(path)


def write_images(out_dir: Path, split: str, images: np.ndarray, ids, truth: np.ndarray, generated: np.ndarray
                 ) -> dict:
    """Each generated image as <id>.png in t2i_<split>/ (built under a temporary name, then renamed) and the contact
    sheet t2i_<split>.png: rows of up to 8 ground-truth images, each over the image generated from its caption."""
    folder = out_dir / f"t2i_{split}"
    partial = out_dir / f".partial-t2i_{split}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for sid, image in zip(ids, images):
        write_png(partial / f"{safe_name(sid)}.png", to_uint8(image))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    rows = []
    for start in range(0, len(truth), 8):
        rows += [truth[start:start + 8], generated[start:start + 8]]
    sheet = out_dir / f"t2i_{split}.png"
    write_png(sheet, image_grid(rows))
    return {"sheet": str(sheet), "images_dir": str(folder)}


def safe_name(sample_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(sample_id))
