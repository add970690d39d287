"""Images given as arrays: MNIST-style CSV files and NumPy ``.npz`` files.

CSV: one image a row, the label first, then the pixels (0..255) in row-major order, with
or without a header row; the article's original code read MNIST this way. ``.npz``: ``x``
as (N, H, W), (N, H, W, C) or (N, C, H, W) and ``y``; or Keras' ``x_train``/``y_train``/
``x_test``/``y_test``; an optional ``classes`` array names the labels.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .errors import DatasetError

# Labels of unnamed data (a CSV's, an npz's) above this are a mistake, not classes.
MAX_CLASSES = 1 << 16


def load_csv(
    path: str | os.PathLike[str],
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W) and int64 labels from an MNIST-style CSV file.

    The image size is ``image_size`` if given, else the square that the pixel count makes.
    """
    path = Path(path)
    try:
        # utf-8-sig: a spreadsheet's byte-order mark must not hide the first row's label
        with open(path, encoding="utf-8-sig") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from None
    header = bool(first.strip()) and not _is_number(first.split(",")[0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: our own error says so
            table = np.loadtxt(
                path, delimiter=",", skiprows=int(header), ndmin=2, dtype=float,
                encoding="utf-8-sig",
            )  # fmt: skip
    except ValueError:
        raise DatasetError(f"{path}: {_first_bad_line(path, int(header))}") from None
    if table.size == 0:
        raise DatasetError(f"{path}: no rows")
    labels, pixels = table[:, 0], table[:, 1:]
    line = 2 + int(header)
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~(np.round(labels) == labels) | (labels < 0))
    if bad.size:
        raise DatasetError(
            f"{path}: line {bad[0] + line - 1}: label {labels[bad[0]]:g} is not a class index "
            f"(0, 1, 2, ...)"
        )
    if labels.max() >= MAX_CLASSES:  # before the int64 conversion, which would wrap 1e20
        row = int(labels.argmax())
        raise DatasetError(
            f"{path}: line {row + line - 1}: label {labels[row]:g} is beyond the "
            f"{MAX_CLASSES:,} classes read"
        )
    bad_rows = np.flatnonzero(
        np.any((pixels < 0) | (pixels > 255) | (pixels != np.round(pixels)), 1)
    )
    if bad_rows.size:
        raise DatasetError(
            f"{path}: line {bad_rows[0] + line - 1}: pixels must be integers in 0..255"
        )
    shape = _image_shape(path, pixels.shape[1], channels, image_size)
    images = pixels.astype(np.uint8).reshape(len(pixels), *shape)
    if channels is not None and shape[0] != channels:  # grey rows asked for as RGB
        images = np.repeat(images, channels, axis=1)
    return images, labels.astype(np.int64)


def _first_bad_line(path: Path, skip: int) -> str:
    """Why NumPy could not read ``path`` as a table: its first ragged or non-numeric line."""
    width = None
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skip or not line.strip():
                continue
            cells = line.rstrip("\r\n").split(",")
            bad = next((cell for cell in cells if not _is_number(cell)), None)
            if bad is not None:
                return f"line {number}: {bad.strip()[:20]!r} is not a number (comma-separated)"
            if width is not None and len(cells) != width:
                return f"line {number}: {len(cells)} values, the lines before have {width}"
            width = len(cells)
    return "not a table of numbers separated by commas"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _image_shape(path: Path, count: int, channels: int | None, size: tuple[int, int] | None):
    """(C, H, W) of rows of ``count`` pixels; with ``channels=3``, rows that make a grey
    image are (1, H, W), to be repeated to RGB as grey folders and .npz images are."""
    c = channels or 1
    if count == 0:
        raise DatasetError(f"{path}: the rows hold a label and no pixels")
    shape = _rows_as(count, c, size)
    if shape is None and c == 3:
        shape = _rows_as(count, 1, size)
    if shape is not None:
        return shape
    if size is not None:
        raise DatasetError(
            f"{path}: {count} pixels a row do not make {c}x{size[0]}x{size[1]} images"
        )
    colour = channels is None and count % 3 == 0 and math.isqrt(count // 3) ** 2 * 3 == count
    hint = "--channels 3 for colour images (planes R, G, B), or " if colour else ""
    raise DatasetError(
        f"{path}: {count} pixels a row do not make a square image of {c} channel(s); "
        f"pass {hint}--image-size HxW"
    )


def _rows_as(count: int, c: int, size: tuple[int, int] | None) -> tuple[int, ...] | None:
    """(c, H, W) if ``count`` pixels make c channels of ``size`` (else of a square)."""
    if size is not None:
        return (c, *size) if c * size[0] * size[1] == count else None
    side = math.isqrt(count // c) if count % c == 0 else 0
    return (c, side, side) if side and c * side * side == count else None


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray | tuple[str, ...] | None]:
    """``{"x", "y", "x_test", "y_test", "classes"}`` from an .npz file: images (N, C, H, W)
    as uint8 or float32 in [0, 1], labels int64; the test entries may be None."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError) as error:
        raise DatasetError(f"{path}: not a readable .npz file ({error})") from None
    if "x" in arrays or "y" in arrays:
        keys = ("x", "y", None, None)
    elif "x_train" in arrays:
        keys = ("x_train", "y_train", "x_test", "y_test")
    else:
        raise DatasetError(
            f"{path}: expected arrays 'x' and 'y' (or 'x_train', 'y_train'), found "
            f"{', '.join(sorted(arrays)) or 'none'}"
        )
    result: dict = {"x": None, "y": None, "x_test": None, "y_test": None}
    for out, key in zip(("x", "y", "x_test", "y_test"), keys):
        if key is None:
            continue
        if key not in arrays:
            raise DatasetError(f"{path}: missing array {key!r}")
        # pop: the file's array is freed as soon as its converted copy exists
        result[out] = (_images if out.startswith("x") else _labels)(path, key, arrays.pop(key))
    for x, y in (("x", "y"), ("x_test", "y_test")):
        if result[x] is not None and len(result[x]) != len(result[y]):
            raise DatasetError(
                f"{path}: {len(result[x])} images in {x!r} but {len(result[y])} labels"
            )
    if result["x_test"] is not None and result["x_test"].shape[1:] != result["x"].shape[1:]:
        raise DatasetError(f"{path}: test images {result['x_test'].shape[1:]} differ from training")
    classes = arrays.get("classes")
    if classes is not None and classes.ndim != 1:
        raise DatasetError(
            f"{path}: 'classes' must be a list of names (K,), got shape {classes.shape}"
        )
    if classes is not None:
        names = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in classes.tolist())
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise DatasetError(f"{path}: 'classes' names {name!r} more than once")
            seen.add(name)
        classes = names
    result["classes"] = classes
    return result


def _images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
            x = x.transpose(0, 3, 1, 2)  # (N, H, W, C)
        elif x.shape[1] not in (1, 3):
            raise DatasetError(f"{path}: {key!r} of shape {x.shape} has neither 1 nor 3 channels")
    else:
        raise DatasetError(
            f"{path}: {key!r} has shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)"
        )
    if len(x) == 0:
        raise DatasetError(f"{path}: {key!r} holds no images")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise DatasetError(f"{path}: float images in {key!r} must be finite and in [0, 1]")
        return np.ascontiguousarray(x, np.float32)
    if x.dtype.kind in "iu" and x.min() >= 0 and x.max() <= 255:
        return np.ascontiguousarray(x, np.uint8)
    raise DatasetError(
        f"{path}: {key!r} has dtype {x.dtype}; use uint8 (0..255) or float in [0, 1]"
    )


def _labels(path: Path, key: str, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y).reshape(-1) if np.ndim(y) == 2 and np.shape(y)[1] == 1 else np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key!r} must be integer labels (N,), got {y.dtype} {y.shape}")
    if y.size and y.min() < 0:
        raise DatasetError(f"{path}: {key!r} holds the negative label {y.min()}")
    return y.astype(np.int64)
