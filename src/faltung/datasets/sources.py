"""One entry point for the user's own data: an image folder, a CSV file or an .npz file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .arrays import MAX_CLASSES, load_csv, load_npz
from .errors import NOT_DATA, DatasetError
from .folder import load_folder
from .mnist import ImageDataset

# The held-out share when the data has no test split of its own.
DEFAULT_TEST_SPLIT = 0.2


def is_own_data(path: str | os.PathLike[str] | None) -> bool:
    """True for a .csv/.npz file or an image folder; False for a folder of IDX files, or
    for no path (a known dataset, found or downloaded)."""
    if path is None:
        return False
    path = Path(path)
    if not path.is_dir():
        return path.suffix.lower() in (".csv", ".npz")
    idx = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
    return not any((path / name).exists() or (path / f"{name}.gz").exists() for name in idx)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the held-out images: ``fraction`` of each class (at least one
    where a class has two or more), drawn with ``seed``; the same seed, the same split."""
    if not 0 < fraction < 1:
        raise DatasetError(f"the held-out fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng([seed, 2])
    held = np.zeros(len(labels), bool)
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        n = round(len(members) * fraction)
        n = min(max(n, 1 if len(members) > 1 else 0), len(members) - 1)
        held[rng.permutation(members)[:n]] = True
    return held


def load_data(
    path: str | os.PathLike[str],
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    test_split: float | None = None,
    seed: int = 0,
    cache: Path | None = None,
    hold_out: bool = True,
) -> ImageDataset:
    """Images from ``path``: a folder of class folders, a ``.csv`` or an ``.npz`` file.

    Images stay uint8 (N, C, H, W) (float32 in [0, 1] if an .npz holds floats). Data without
    a test split of its own is split with :func:`stratified_split` (``test_split``, default
    0.2, and ``seed``), unless ``hold_out`` is False: then all of it is the training split
    and the test split is empty. Every problem raises a DatasetError naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    x_test = y_test = None
    classes: tuple[str, ...] | None = None
    if path.is_dir():
        found = load_folder(path, channels, image_size, cache)
        x, y, classes = found.images, found.labels, found.classes
        if found.has_test_split:
            x, y, x_test, y_test = (
                x[~found.is_test],
                y[~found.is_test],
                x[found.is_test],
                y[found.is_test],
            )
    elif path.suffix.lower() == ".csv":
        x, y = load_csv(path, channels, image_size)
    elif path.suffix.lower() == ".npz":
        arrays = load_npz(path)
        x, y, x_test, y_test, classes = (
            arrays[k] for k in ("x", "y", "x_test", "y_test", "classes")
        )
        x, x_test = (_adapt(path, a, channels, image_size) for a in (x, x_test))
    else:
        raise DatasetError(f"{path}: {NOT_DATA}")
    if len(x) == 0:
        raise DatasetError(f"{path}: no images")
    named = classes is not None
    if classes is None:
        top = max(int(y.max()), int(y_test.max()) if y_test is not None and y_test.size else 0)
        if top >= MAX_CLASSES:  # before naming top + 1 classes
            raise DatasetError(f"{path}: label {top} is beyond the {MAX_CLASSES:,} classes read")
        classes = tuple(str(k) for k in range(top + 1))
    for split, labels in (("training", y), ("test", y_test)):
        if labels is not None and labels.size and labels.max() >= len(classes):
            raise DatasetError(
                f"{path}: {split} label {labels.max()} is out of range for the "
                f"{len(classes)} classes"
            )
    if x_test is None and not hold_out:
        x_test, y_test = x[:0], y[:0]
    held_out = x_test is None
    if held_out:
        held = stratified_split(y, DEFAULT_TEST_SPLIT if test_split is None else test_split, seed)
        if not held.any():
            raise DatasetError(f"{path}: {len(x)} images are too few to hold out a test split")
        x, y, x_test, y_test = x[~held], y[~held], x[held], y[held]
    return ImageDataset(path.resolve().name, x, y, x_test, y_test, classes, held_out, named)


def check_training_labels(data: ImageDataset) -> None:
    """Labels a classifier can be trained on: two classes or more, and labels that number
    the classes without gaps where the data does not name them (a CSV's, an npz's)."""
    hint = " (is the label the first column?)" if data.name.lower().endswith(".csv") else ""
    if len(data.classes) < 2:
        raise DatasetError(
            f"{data.name}: every image has one label ({data.classes[0]}); a classifier needs "
            f"two classes or more{hint}"
        )
    missing = np.setdiff1d(np.arange(len(data.classes)), data.train_labels)
    if not data.named and missing.size:
        raise DatasetError(
            f"{data.name}: no training image has label {missing[0]} of 0..{len(data.classes) - 1};"
            f" labels must number the classes 0, 1, 2, ... without gaps{hint}"
        )


def _adapt(path: Path, x, channels, size):
    """An .npz's images as asked: channels must match (grey to RGB is repeated), sizes must."""
    if x is None:
        return None
    if size is not None and tuple(x.shape[2:]) != tuple(size):
        raise DatasetError(f"{path}: images are {x.shape[3]}x{x.shape[2]}, not {size[1]}x{size[0]}")
    if channels is not None and x.shape[1] != channels:
        if x.shape[1] == 1:
            return np.repeat(x, channels, axis=1)
        raise DatasetError(f"{path}: images have {x.shape[1]} channels, not {channels}")
    return x
