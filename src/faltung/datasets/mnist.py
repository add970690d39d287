"""MNIST and Fashion-MNIST as NumPy arrays, every file verified and cross-checked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import MNIST, DatasetInfo, dataset_info
from .errors import DatasetError
from .fetch import Downloader, data_dir_from_env, locate, progress_downloader
from .idx import parse_idx
from .pypi_mnist import rebuild_idx_files


@dataclass
class ImageDataset:
    """Images (N, C, H, W) and integer labels (N,) of a training and a test split.

    ``held_out`` says that the test split was drawn from data that had none of its own;
    ``named`` that the class names came with the data, not from counting its labels.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    held_out: bool = False
    named: bool = True


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.astype(np.float32) * np.float32(1 / 255)


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike[str] | None = None,
    normalize: bool = True,
    cache: Path | None = None,
    downloader: Downloader = progress_downloader,
) -> ImageDataset:
    """Load ``name`` ('mnist' or 'fashion-mnist').

    Images are float32 in [0, 1] when ``normalize`` (else the raw uint8), shaped
    (N, 1, 28, 28); labels are int64 in [0, 10).
    """
    info = dataset_info(name)
    directory = Path(data_dir) if data_dir is not None else data_dir_from_env()
    fallback = rebuild_idx_files if info.name == MNIST.name else None
    arrays = {}
    for role, spec in info.files.items():
        content = locate(info, role, directory, cache, downloader, fallback)
        arrays[role] = parse_idx(content, f"{info.name} {spec.name}")
    train_x, train_y = _check_split(info, arrays, "train")
    test_x, test_y = _check_split(info, arrays, "test")
    convert = to_float if normalize else (lambda a: a)
    return ImageDataset(info.name, convert(train_x), train_y, convert(test_x), test_y, info.classes)


def _check_split(info: DatasetInfo, arrays: dict[str, np.ndarray], split: str):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    image_file = info.files[f"{split}_images"].name
    label_file = info.files[f"{split}_labels"].name
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{image_file}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{label_file}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{label_file}: {len(labels)} labels but {image_file} has {len(images)} images"
        )
    if labels.size and labels.max() >= len(info.classes):
        raise DatasetError(f"{label_file}: label {labels.max()} outside 0..{len(info.classes) - 1}")
    return images[:, None, :, :], labels.astype(np.int64)
