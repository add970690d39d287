"""Small synthetic MNIST-shaped datasets written as real IDX files, with a matching catalogue."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from faltung.datasets.catalog import DataFile, DatasetInfo
from faltung.datasets.idx import encode_idx


def synthetic_arrays(n_train: int = 60, n_test: int = 20, seed: int = 0):
    """Class k is a bright bar at row 2k: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def make(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 4 : 2 * k + 6, 4:24] = 255
        return images, labels

    return {**dict(zip(("train_images", "train_labels"), make(n_train))),
            **dict(zip(("test_images", "test_labels"), make(n_test)))}  # fmt: skip


NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_dataset(directory: Path, arrays=None, compress: bool = True, name: str = "mnist"):
    """Write the four IDX files; return a DatasetInfo whose checksums match them."""
    arrays = arrays if arrays is not None else synthetic_arrays()
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for role, file_name in NAMES.items():
        data = encode_idx(arrays[role])
        md5 = hashlib.md5(data).hexdigest()
        if compress:
            blob = gzip.compress(data, mtime=0)
            (directory / f"{file_name}.gz").write_bytes(blob)
            files[role] = DataFile(file_name, md5, hashlib.md5(blob).hexdigest())
        else:
            (directory / file_name).write_bytes(data)
            files[role] = DataFile(file_name, md5, None)
    return DatasetInfo(name, files, ("http://mirror.invalid/",), tuple(str(i) for i in range(10)))


def install_catalogue(monkeypatch, info: DatasetInfo) -> None:
    """Make ``load_dataset(info.name)`` use ``info`` (synthetic checksums)."""
    from faltung.datasets import catalog

    monkeypatch.setitem(catalog.DATASETS, info.name, info)


SHAPES = ("bar", "box", "cross")


def draw_shapes(per_class: int = 12, size: int = 16, rgb: bool = False, seed: int = 0):
    """uint8 images (N, C, H, W) of three classes of drawn shapes at random places, and labels:
    a horizontal bar, a hollow box and a cross; in RGB each shape gets a random colour."""
    rng = np.random.default_rng(seed)
    channels = 3 if rgb else 1
    n = per_class * len(SHAPES)
    labels = np.repeat(np.arange(len(SHAPES)), per_class)
    images = rng.integers(0, 30, (n, channels, size, size)).astype(np.uint8)
    s = size // 2
    for i, k in enumerate(labels):
        top, left = rng.integers(0, size - s, 2)
        colour = rng.integers(120, 256, channels) if rgb else np.array([255])
        patch = np.zeros((s, s), bool)
        if k == 0:
            patch[s // 2 - 1 : s // 2 + 1, :] = True
        elif k == 1:
            patch[[0, -1], :] = patch[:, [0, -1]] = True
        else:
            patch[s // 2, :] = patch[:, s // 2] = True
        region = images[i, :, top : top + s, left : left + s]
        region[:, patch] = colour[:, None]
    return images, labels


def write_folder(root: Path, images, labels, classes=SHAPES, fmt: str = "png"):
    """Write images as DIR/<class>/<i>.png (Pillow); returns the file paths."""
    from PIL import Image

    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        path = folder / f"{i:05d}.{fmt}"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths
