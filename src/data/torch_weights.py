"""Read a PyTorch `torch.save` state dict into numpy arrays without torch.

Pretrained weights ship in pip packages as `.pth` files; torch is a multi-GB dependency that the project only needs
for its tests. Both of torch's file layouts are read: the zip archive (torch >= 1.6) and the legacy pickle stream
(magic number, protocol, system info, the pickled object, its storage keys, then every storage's raw bytes).
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from typing import Dict

import numpy as np

from src.data.errors import FeatureError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _StorageType:
    def __init__(self, name: str):
        if name not in STORAGE_DTYPES:
            raise FeatureError(f"unsupported torch storage type {name}")
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage whose bytes arrive after the pickle (legacy) or from its own zip member."""

    def __init__(self, dtype: np.dtype):
        self.dtype, self.array = dtype, None


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *unused):
    return ("tensor", storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *a: data
        raise FeatureError(f"unsupported object in the weights file: {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key = pid[0], pid[1], str(pid[2])
        if kind != "storage":
            raise FeatureError(f"unsupported persistent id {kind!r} in the weights file")
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else np.dtype(np.float32)
        return self.storages.setdefault(key, _Storage(dtype))


def _materialise(obj) -> Dict[str, np.ndarray]:
    out = OrderedDict()
    for name, value in obj.items():
        if not (isinstance(value, tuple) and value and value[0] == "tensor"):
            continue  # e.g. BatchNorm's num_batches_tracked scalars are kept; anything else is not a weight
        _, storage, offset, size, stride = value
        item = storage.dtype.itemsize
        array = np.lib.stride_tricks.as_strided(storage.array[offset:], size, [s * item for s in stride])
        out[name] = np.array(array)
    return out


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """name -> array of a `torch.save(model.state_dict())` file."""
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as f:
            return _read_legacy(f)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise FeatureError(f"{path}: cannot read torch weights ({e})") from None


def _read_legacy(f) -> Dict[str, np.ndarray]:
    if pickle.load(f) != LEGACY_MAGIC:
        raise FeatureError("not a torch weights file (wrong magic number)")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info
    storages: dict = {}
    obj = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        storage = storages[str(key)]
        count = int(np.frombuffer(f.read(8), np.int64)[0])
        storage.array = np.frombuffer(f.read(count * storage.dtype.itemsize), storage.dtype)
    return _materialise(obj)


def _read_zip(path: str) -> Dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        prefix = names[0].split("/")[0]
        storages: dict = {}
        obj = _Unpickler(io.BytesIO(z.read(f"{prefix}/data.pkl")), storages).load()
        for key, storage in storages.items():
            storage.array = np.frombuffer(z.read(f"{prefix}/data/{key}"), storage.dtype)
    return _materialise(obj)
