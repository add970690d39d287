"""Image folders: ``DIR/<class>/*.png`` (or ``DIR/train/<class>/...`` and ``DIR/test/...``).

Like torchvision's ImageFolder: class names are the folder names, sorted, and a class
holds the images in its folder and the folders inside it. Images are
decoded once with Pillow (in threads: its decoders release the GIL), converted to grey or
RGB, resized if asked, and kept as uint8 (N, C, H, W). The result is cached as one ``.npz``
beside a JSON manifest listing every file with its size and modification time; any file
changed, added or removed makes the next run decode again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from ..images import EXTENSIONS, FORMATS, MAX_PIXELS, decode
from .errors import DatasetError

SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
LAYOUTS = "DIR/<class>/*.png, or DIR/train/<class>/... and DIR/test/<class>/..."
# Raised whenever decoding changes what an image file gives (2: upright by its EXIF tag),
# so that caches of earlier decodings are made again.
CACHE_VERSION = 2
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass
class FolderImages:
    """uint8 images (N, C, H, W), int64 labels, and which images belong to the test split
    (``DIR/test``); ``skipped`` lists the files that could not be read."""

    images: np.ndarray
    labels: np.ndarray
    is_test: np.ndarray
    classes: tuple[str, ...]
    has_test_split: bool
    skipped: tuple[str, ...] = ()


def scan_folder(root: Path) -> tuple[list[tuple[str, int, bool]], tuple[str, ...], bool]:
    """(relative path, class index, is test) of every image file, the class names, and
    whether ``root`` has ``train``/``test`` subfolders. Checks the layout."""
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    parts = [("train", False), ("test", True)] if split else [("", False)]
    if split:
        unread = [e.name for e in os.scandir(root) if e.is_dir() and e.name.lower() in SPLIT_NAMES]
        for name in sorted(set(unread) - {"train", "test"}):
            warnings.warn(
                f"{root / name} is not read: validation images are held out of train/ "
                "(--val-split)",
                stacklevel=2,
            )
    classes = sorted(
        entry.name
        for entry in os.scandir(root / parts[0][0])
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise DatasetError(f"{root / parts[0][0]}: no class folders; expected {LAYOUTS}")
    # A split folder among the classes is a layout we do not read, not a class.
    misplaced = [name for name in classes if name.lower() in SPLIT_NAMES] if not split else []
    if misplaced and any(entry.is_dir() for entry in os.scandir(root / misplaced[0])):
        raise DatasetError(
            f"{root / misplaced[0]}: a split folder (train/ and test/ go together); "
            f"expected {LAYOUTS} (for one folder of classes, pass {root / misplaced[0]} itself)"
        )
    files: list[tuple[str, int, bool]] = []
    for part, is_test in parts:
        base = root / part
        found = sorted(
            e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith(".")
        )
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DatasetError(f"{base}: class folder {extra[0]!r} is not in {root / 'train'}")
        for index, name in enumerate(classes):
            folder = base / name
            if not folder.is_dir():
                if is_test:
                    continue
                raise DatasetError(f"{folder}: missing class folder")
            images = _images_in(folder)
            if not images:
                raise DatasetError(
                    f"{folder}: class folder holds no images ({', '.join(EXTENSIONS)})"
                )
            files += [(str(Path(part, name, image)), index, is_test) for image in images]
    return files, tuple(classes), split


def _images_in(folder: Path) -> list[str]:
    """Image files in ``folder`` and the folders inside it, as paths relative to it, sorted;
    hidden files and folders (.DS_Store, macOS's ._ files, .git) are not images."""
    found = []
    for directory, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        split = next((name for name in folders if name.lower() in SPLIT_NAMES), None)
        if split is not None:
            raise DatasetError(
                f"{Path(directory, split)}: a split folder inside a class; expected {LAYOUTS}"
            )
        inside = Path(directory).relative_to(folder)
        found += [
            str(inside / name)
            for name in files
            if not name.startswith(".") and name.lower().endswith(EXTENSIONS)
        ]
    return sorted(found)


def load_folder(
    root: str | os.PathLike[str],
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    cache: Path | None = None,
    workers: int | None = None,
) -> FolderImages:
    """Decode every image under ``root`` (or reuse the cache when no file changed)."""
    root = Path(root)
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    files, classes, split = scan_folder(root)
    stamps = [_stamp(root / name) for name, _, _ in files]
    options = {"channels": channels, "image_size": list(image_size) if image_size else None}
    manifest = {
        "version": CACHE_VERSION,
        "root": str(root.absolute()),
        "options": options,
        "files": [[name, *stamp] for (name, _, _), stamp in zip(files, stamps)],
        "classes": list(classes),
    }
    key = hashlib.sha1(json.dumps([manifest["root"], options]).encode()).hexdigest()[:16]
    cache_file = (cache or _default_cache()) / f"{root.resolve().name}-{key}"
    cached = _read_cache(cache_file, manifest)
    if cached is not None:
        return cached
    result = _decode_all(root, files, classes, split, channels, image_size, workers)
    _write_cache(cache_file, manifest, result)
    return result


def _beside(path: Path, suffix: str) -> Path:
    """``path`` with ``suffix`` added (a folder named photos.v1 keeps its .v1)."""
    return path.with_name(path.name + suffix)


def _stamp(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def _default_cache() -> Path:
    from .fetch import cache_dir

    return cache_dir() / "folders"


def _read_cache(path: Path, manifest: dict) -> FolderImages | None:
    try:
        saved = json.loads(_beside(path, ".json").read_text())
        if saved.get("manifest") != manifest:
            return None
        with np.load(_beside(path, ".npz"), allow_pickle=False) as arrays:
            images, labels, is_test = arrays["images"], arrays["labels"], arrays["is_test"]
    except (OSError, ValueError, KeyError):
        return None
    return FolderImages(
        images, labels, is_test, tuple(manifest["classes"]), bool(saved["split"]),
        tuple(saved["skipped"]),
    )  # fmt: skip


def _write_cache(path: Path, manifest: dict, result: FolderImages) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(_beside(path, ".npz")) as handle:
            np.savez(handle, images=result.images, labels=result.labels, is_test=result.is_test)
        record = {"manifest": manifest, "split": result.has_test_split,
                  "skipped": list(result.skipped)}  # fmt: skip
        with atomic_write(_beside(path, ".json")) as handle:
            handle.write(json.dumps(record).encode())
    except OSError as error:  # a cache is a convenience: say so, and go on
        print(f"faltung: cannot cache the decoded images in {path} ({error})", file=sys.stderr)


def _decode_all(root, files, classes, split, channels, image_size, workers) -> FolderImages:
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError(
            f"{root}: reading image folders needs Pillow: pip install 'faltung[images]'"
        ) from None
    paths = [root / name for name, _, _ in files]
    if channels is None:  # what the files are: grey unless any of them has colour
        modes = _map(lambda p: _mode(Image, p), paths, workers)
        colour = any(m is not None and m not in GREY_MODES + ("P",) for m in modes) or any(
            _palette_colour(Image, p) for p, m in zip(paths, modes) if m == "P"
        )
        channels = 3 if colour else 1
    decoded = _map(lambda p: _decode(Image, p, channels, image_size), paths, workers)
    good = [i for i, image in enumerate(decoded) if not isinstance(image, str)]
    skipped = tuple(decoded[i] for i in range(len(decoded)) if isinstance(decoded[i], str))
    if skipped:
        shown = "; ".join(skipped[:10]) + (
            f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        )
        print(f"faltung: skipped {len(skipped)} unreadable image file(s): {shown}", file=sys.stderr)
    if not good:
        raise DatasetError(f"{root}: no readable images")
    labels = np.array([files[i][1] for i in good], np.int64)
    is_test = np.array([files[i][2] for i in good], bool)
    for index, name in enumerate(classes):
        if not np.any(labels[~is_test] == index):
            raise DatasetError(f"{root}: class {name!r} has no readable training images")
    shapes = {decoded[i].shape for i in good}
    if len(shapes) > 1:
        first = decoded[good[0]]
        other = next(i for i in good if decoded[i].shape != first.shape)
        raise DatasetError(
            f"{paths[other]}: image is {_size_text(decoded[other])}, but {paths[good[0]]} is "
            f"{_size_text(first)}; pass --image-size HxW to resize them all"
        )
    images = np.stack([decoded[i] for i in good])
    return FolderImages(images, labels, is_test, classes, split, skipped)


def _map(function, items, workers):
    if len(items) < 64 or workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(function, items, chunksize=64))


def _open(Image, path: Path):
    picture = Image.open(path, formats=FORMATS)
    if picture.width * picture.height > MAX_PIXELS or min(picture.size) < 1:
        picture.close()
        raise ValueError(f"image is {picture.width}x{picture.height} pixels")
    return picture


def _mode(Image, path: Path) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _open(Image, path) as picture:
                return picture.mode
    except Exception:  # unreadable: reported when decoding
        return None


def _palette_colour(Image, path: Path) -> bool:
    try:
        with _open(Image, path) as picture:
            if picture.mode != "P":
                return False
            rgb = np.asarray(picture.convert("RGB"))
            return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))
    except Exception:
        return False


def _decode(Image, path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray | str:
    """uint8 (C, H, W), or the reason the file cannot be read (a string naming it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(Image, path) as picture:
                picture.load()
                return decode(Image, picture, channels, size)
    except Exception as error:
        return f"{path} ({str(error) or type(error).__name__})"


def _size_text(image: np.ndarray) -> str:
    return f"{image.shape[2]}x{image.shape[1]}"
