"""Reading user images for prediction: PNG/JPEG (through Pillow) or .npy, one at a time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class ImageError(ValueError):
    """One input file cannot be turned into a model input; the message says why."""


def load_image(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (28, 28),
    resize: bool = False,
    invert: bool = False,
) -> np.ndarray:
    """A (1, H, W) float32 image in [0, 1] from a .npy array or an image file.

    Colour is converted to grey, 16-bit images are scaled to [0, 1]; an image of the wrong
    size is an error unless ``resize``. ``invert`` turns dark-on-light drawings into the
    light-on-dark digits MNIST is made of.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        image = _from_npy(path)
    else:
        image = _from_picture(path, size, resize)
    if image.shape != size:
        if not resize:
            raise ImageError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} pixels, the model expects "
                f"{size[1]}x{size[0]}; pass --resize to scale it"
            )
        image = _resize(image, size)
    if invert:
        image = 1.0 - image
    return image[None].astype(np.float32)


def _from_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ImageError(f"{path}: not a readable .npy array ({error})") from None
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ImageError(f"{path}: expected one grey image (H, W), got shape {array.shape}")
    if array.dtype == np.uint8:
        return array / 255.0
    if array.dtype == np.uint16:
        return array / 65535.0
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ImageError(f"{path}: float images must hold finite values in [0, 1]")
        return array.astype(np.float64)
    raise ImageError(f"{path}: unsupported array dtype {array.dtype} (use uint8, uint16 or float)")


def _from_picture(path: Path, size: tuple[int, int], resize: bool) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImageError(
            f"{path}: reading image files needs Pillow: pip install 'faltung[images]'"
        ) from None
    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grey: scale the full range, never truncate to 8 bits.
                array = np.asarray(picture, dtype=np.float64)
                top = 65535.0 if array.max(initial=0) > 255 or picture.mode != "I" else 255.0
                return np.clip(array / top, 0, 1)
            if picture.mode == "F":
                return np.clip(np.asarray(picture, dtype=np.float64), 0, 1)
            if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
                # Transparent pixels count as background (black), as in MNIST.
                rgba = picture.convert("RGBA")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                picture = Image.alpha_composite(black, rgba)
            grey = picture.convert("L")
            return np.asarray(grey, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from None


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - .npy resizing without Pillow
        raise ImageError("--resize needs Pillow: pip install 'faltung[images]'") from None
    picture = Image.fromarray(image.astype(np.float32), mode="F")
    return np.asarray(picture.resize((size[1], size[0]), Image.Resampling.LANCZOS), np.float64)
