"""dVAE codes stored with the prepared data, so that pre-training (DIR) and text-to-image never run the dVAE encoder.

    python -m src.data.codes --dvae runs/demo/dvae [--data data/demo/prepared] [--batch-size 64]

writes PREPARED/image_codes/<split>.npy (int32 [samples, grid^2]: the argmax codes of each sample's thumbnail, -1 for
a sample without one) and PREPARED/image_codes/meta.json (codebook size, image size, grid, the dVAE checkpoint), into
a temporary directory renamed into place at the end. Readers check the codebook and image size against their recipe.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from src.config import ConfigError, DVAEConfig
from src.data.records import DatasetError, PreparedData, open_prepared, write_json_atomic

DIRECTORY = "image_codes"


def extract_codes(data: PreparedData, cfg, ckpt, batch_size: int = 64, log=print) -> Path:
    """Encode every split's thumbnails with the dVAE of `cfg` / `ckpt`; returns the codes directory."""
    from src.data.thumbnails import load_thumbnails, samples_with_thumbnails
    from src.tasks.dvae import Reconstruct, load_trained, reconstruct
    model, _ = load_trained(cfg, ckpt)
    cell = Reconstruct(model)
    final = data.root / DIRECTORY
    partial = data.root / f".partial-{DIRECTORY}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for split in data.splits:
        codes = np.full((data.count(split), model.grid * model.grid), -1, np.int32)
        if len(samples_with_thumbnails(data, split)):
            index, images = load_thumbnails(data, split, batch_size=batch_size, cfg=cfg.data)
            codes[index] = reconstruct(cell, images, batch_size)[0]
        np.save(partial / f"{split}.npy", codes)
        log(f"{split}: codes of {(codes[:, 0] >= 0).sum()} of {len(codes)} samples")
    write_json_atomic(partial / "meta.json", {"codebook_size": cfg.dvae.codebook_size, "image_size": model.image_size,
                                              "grid": model.grid, "dvae_checkpoint": str(ckpt)})
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def codes_meta(data: PreparedData) -> dict:
    """The stored codes' meta.json: codebook_size, image_size, grid and the dVAE checkpoint they came from."""
    import json
    meta_path = data.root / DIRECTORY / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{data.root} has no dVAE codes ({DIRECTORY}/): train a dVAE (config/dvae_*.yaml), then "
                           f"python -m src.data.codes --dvae RUN --data {data.root}")
    return json.loads(meta_path.read_text())


def load_codes(data: PreparedData, split: str, dvae: DVAEConfig) -> np.ndarray:
    """The stored codes of `split` [samples, grid^2] (-1 rows: no image); refuses codes of another codebook."""
    meta_path = data.root / DIRECTORY / "meta.json"
    meta = codes_meta(data)
    if meta["codebook_size"] != dvae.codebook_size:
        raise ConfigError(f"{meta_path}: codes over {meta['codebook_size']} codes, but dvae.codebook_size is "
                          f"{dvae.codebook_size}; extract them again with the dVAE of this recipe")
    size = data.meta["prepare"]["image"].get("thumb_size", 0)
    if meta["image_size"] != size:
        raise ConfigError(f"{meta_path}: codes of {meta['image_size']}px images, but the data's thumbnails are "
                          f"{size}px; extract them again")
    codes = np.load(data.root / DIRECTORY / f"{split}.npy")
    if len(codes) != data.count(split):
        raise DatasetError(f"{data.root / DIRECTORY / split}.npy has {len(codes)} rows for {data.count(split)} "
                           "samples: extract the codes again")
    return codes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                prog="python -m src.data.codes")
    p.add_argument("--dvae", required=True, help="a dVAE checkpoint or run directory")
    p.add_argument("--data", default=None, help="the prepared data (default: the dVAE run's data.path)")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    import mindspore as ms
    from src.train.checkpoint import CheckpointError, load_run_config, resolve_checkpoint
    try:
        cfg = load_run_config(args.dvae, overrides=[f"data.path={args.data}"] if args.data else [])
        ms.set_context(mode=ms.GRAPH_MODE)
        out = extract_codes(open_prepared(cfg.data.path), cfg, resolve_checkpoint(args.dvae), args.batch_size)
    except (ConfigError, DatasetError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"codes: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
