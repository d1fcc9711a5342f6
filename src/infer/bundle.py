"""A deployment bundle: one folder with everything inference needs, written by export.py and read by
`eval.py --mindir BUNDLE`, `infer.py --mindir BUNDLE` and the Python API, on a machine with neither the training data
nor the run.

    BUNDLE/bundle.json       the manifest: task, graphs (inputs, outputs), tokenizer, decoding settings, the run's
                             config, the MindSpore version it was exported with, the packages its extractors need
                             (name and version), and every other file's size and SHA-256
    BUNDLE/<graph>.mindir    one graph per inference cell
    BUNDLE/data_settings/    the settings of the data the model was trained on (src/data/lineage.py): meta.json
                             (extractors, standardisation statistics, labels, answer vocabulary), vocab.txt, and the
                             region codebook when there is one

A bundle is written into a temporary folder and renamed into place. Reading one checks it first (`check_bundle`): a
changed or missing file, another MindSpore release or a missing extractor package is refused in one line naming it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Callable, List

from src.data.lineage import SETTINGS_DIR
from src.data.records import write_json_atomic
from src.files import file_digest, replace_dir

MANIFEST = "bundle.json"
VERSION = 1
SETTINGS = SETTINGS_DIR


class BundleError(ValueError):
    """A bundle that cannot be used here; the message names the file or the package."""


def mindspore_release(version: str) -> str:
    """The release a MINDIR file belongs to: major.minor (2.10.0 and 2.10.1 read each other's graphs)."""
    return ".".join(version.split(".")[:2])


def extractor_requirements(meta: dict) -> dict:
    """What making inputs from files needs, as the data was prepared: {"packages": {distribution: version}} of the
    pretrained extractors' weights and {"modules": [...]} of their runtimes (onnxruntime comes as several
    distributions: its module is what counts)."""
    packages, modules = {}, []
    for m in ("image", "audio"):
        extractor = (meta.get(m) or {}).get("extractor") or {}
        if extractor.get("package"):
            packages[extractor["package"]] = extractor.get("version", "")
        if extractor.get("runtime"):
            modules.append(extractor["runtime"])
    return {"packages": packages, "modules": modules}


def write_bundle(out: Path, write: Callable[[Path], dict]) -> Path:
    """`write(folder)` writes the graphs and data settings into a temporary folder and returns the manifest's
    content; the files' sizes and checksums are added, and the folder replaces `out` whole. Returns the manifest."""
    import mindspore as ms
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = write(tmp)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest.update(bundle_version=VERSION, mindspore=ms.__version__,
                        requires=extractor_requirements(json.loads((tmp / SETTINGS / "meta.json").read_text())),
                        files={p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": file_digest(p)}
                               for p in files})
        write_json_atomic(tmp / MANIFEST, manifest)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / MANIFEST


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST}: not a bundle (export.py --out FOLDER writes one)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    version = manifest.get("bundle_version") if isinstance(manifest, dict) else None
    if version != VERSION:
        raise BundleError(f"{path}: bundle version {version}, this code reads version {VERSION}: export again")
    return manifest


def check_bundle(folder: Path, checksums: bool = True) -> dict:
    """The manifest of the bundle `folder`, once every file it lists is there with its size (and checksum), the
    MindSpore release is the one it was exported with and each extractor package is installed; else a BundleError
    (or FileNotFoundError) naming what is wrong."""
    import mindspore as ms
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} (listed in {folder / MANIFEST}) not found")
        if path.stat().st_size != expected["size"] or (checksums and file_digest(path) != expected["sha256"]):
            raise BundleError(f"{path} is damaged (its size or SHA-256 differs from {folder / MANIFEST}): copy the "
                              "bundle again")
    exported, here = mindspore_release(manifest["mindspore"]), mindspore_release(ms.__version__)
    if exported != here:
        raise BundleError(f"{folder / MANIFEST}: exported with MindSpore {manifest['mindspore']}, this is "
                          f"{ms.__version__}: install mindspore=={exported}.* or export again here")
    missing = missing_requirements(manifest["requires"])
    if missing:
        raise BundleError(f"{folder / MANIFEST}: its inputs are made with {', '.join(missing)}, not installed here: "
                          f"pip install {' '.join(missing)}")
    return manifest


def missing_requirements(requires: dict) -> List[str]:
    """The requirements (package==version, or a module) of `requires` that are not installed here."""
    missing = []
    for package, version in requires["packages"].items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or (version and installed != version):
            missing.append(f"{package}=={version}" if version else package)
    return missing + [m for m in requires["modules"] if importlib.util.find_spec(m) is None]
