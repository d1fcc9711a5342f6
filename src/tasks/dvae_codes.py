"""Computing the dVAE codes stored with the prepared data (src/data/codes.py reads them).

    python -m src.tasks.dvae_codes --dvae runs/demo/dvae [--data data/demo/prepared] [--batch-size 64]

encodes every split's thumbnails with the dVAE and writes PREPARED/image_codes/ into a temporary directory renamed
into place at the end; codes already made by the same checkpoint are kept (--force encodes again).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from src.commands import run_main
from src.config import ConfigError
from src.data.codes import DIRECTORY
from src.data.records import DatasetError, PreparedData, open_prepared, write_json_atomic
from src.data.thumbnails import load_thumbnails, samples_with_thumbnails
from src.tasks.dvae import Reconstruct, load_trained, reconstruct


def extract_codes(data: PreparedData, cfg, ckpt, batch_size: int = 64, log=print) -> Path:
    """Encode every split's thumbnails with the dVAE of `cfg` / `ckpt`; returns the codes directory."""
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                prog="python -m src.tasks.dvae_codes")
    p.add_argument("--dvae", required=True, help="a dVAE checkpoint or run directory")
    p.add_argument("--data", default=None, help="the prepared data (default: the dVAE run's data.path)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--force", action="store_true", help="encode again even when the codes are from this checkpoint")
    args = p.parse_args(argv)
    import mindspore as ms
    from src.compile_cache import enable_compile_cache, graph_options
    from src.train.checkpoint import CheckpointError, load_run_config, resolve_checkpoint

    def run() -> None:
        cfg = load_run_config(args.dvae, overrides=[f"data.path={args.data}"] if args.data else [])
        ms.set_context(mode=ms.GRAPH_MODE)
        enable_compile_cache("dvae_codes", cfg, graph_options(args))
        data, ckpt = open_prepared(cfg.data.path), resolve_checkpoint(args.dvae)
        current = data.root / DIRECTORY / "meta.json"
        if not args.force and current.is_file() and \
                json.loads(current.read_text(encoding="utf-8")).get("dvae_checkpoint") == str(ckpt):
            print(f"codes: {data.root / DIRECTORY} (up to date with {ckpt})")
            return
        print(f"codes: {extract_codes(data, cfg, ckpt, args.batch_size)}")
    return run_main(run, (ConfigError, DatasetError, CheckpointError))


if __name__ == "__main__":
    sys.exit(main())
