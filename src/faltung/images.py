"""Reading user images for prediction: PNG/JPEG (through Pillow) or .npy, one at a time.

Files come from anywhere, so a file is checked before it is decoded: its declared size
(a few header bytes) must be the model's, or at most ``MAX_PIXELS`` when resizing, and only
plain raster formats are opened. Whatever a decoder raises becomes an ImageError that
names the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

# A 33-megapixel photo still fits (decoded as RGBA about 130 MB); decompression bombs,
# which declare billions of pixels in a few kilobytes, are refused before decoding.
MAX_PIXELS = 2**25
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
# The files of those formats that image folders are read from, and predict finds in one.
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class ImageError(ValueError):
    """One input file cannot be turned into a model input; the message says why."""


def load_image(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (28, 28),
    resize: bool = False,
    invert: bool = False,
    channels: int = 1,
) -> np.ndarray:
    """A (C, H, W) float32 image in [0, 1] from a .npy array or an image file.

    An image file is read as training reads an image folder (:func:`decode`), to grey with
    ``channels=1`` or RGB with ``channels=3``; a .npy array is one image of ``channels``
    channels. An image of the wrong size is an error unless ``resize``. ``invert`` turns
    dark-on-light drawings into the light-on-dark digits MNIST is made of (see
    :func:`is_dark_on_light` to decide).
    """
    path = Path(path)
    size = (int(size[0]), int(size[1]))
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image (and holds no image files)")
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        image = _from_npy(path, size, resize, channels)
        if image.shape[1:] != size:
            image = np.stack([_resize(plane, size) for plane in image])
    else:
        image = _from_picture(path, size, resize, channels)
    if invert:
        image = 1.0 - image
    return image.astype(np.float32, copy=False)


# The EXIF tag that says how the camera was held: the pixels may be stored on their side.
EXIF_ORIENTATION = 0x0112


def orientation(picture) -> int:
    """A Pillow image's EXIF orientation: 1 upright, 2 to 8 mirrored and/or turned."""
    return picture.getexif().get(EXIF_ORIENTATION, 1)


def upright_size(picture) -> tuple[int, int]:
    """(H, W) of a Pillow image as a viewer shows it: EXIF orientations 5 to 8 turn it by a
    quarter, swapping the sides."""
    quarter = orientation(picture) in (5, 6, 7, 8)
    return (picture.width, picture.height) if quarter else (picture.height, picture.width)


def decode(Image, picture, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (C, H, W) of a loaded Pillow image, as training and prediction both read one.

    Turned upright as its EXIF orientation says (a phone's photo is often stored on its
    side); transparent pixels lie on black (MNIST's background); 16-bit grey is scaled by
    its full range (or by 255 for a 32-bit "I" image that uses only 8 bits), float grey
    taken as [0, 1]; then grey (``channels=1``) or RGB, resized bilinearly to ``size``
    (H, W).
    """
    if orientation(picture) != 1:
        from PIL import ImageOps

        picture = ImageOps.exif_transpose(picture)
    if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        grey = np.nan_to_num(np.asarray(picture, np.float32))
        if picture.mode == "F":
            top = 1.0
        elif picture.mode == "I" and grey.max(initial=0) <= 255:
            top = 255.0
        else:
            top = 65535.0
        levels = np.round(np.clip(grey / top, 0, 1) * 255).astype(np.uint8)
        if "transparency" in picture.info:  # one grey value marks the transparent pixels
            levels[grey == picture.info["transparency"]] = 0
        picture = Image.fromarray(levels)
    elif picture.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        picture = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    picture = picture.convert("L" if channels == 1 else "RGB")
    if size is not None and picture.size != (size[1], size[0]):
        picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(picture, np.uint8)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def is_dark_on_light(image: np.ndarray) -> bool:
    """True when the border is bright and brighter than the centre: dark ink on paper.

    MNIST digits are light on a black background; a drawing from a paint program or a
    photo of paper is the other way round and must be inverted before it is classified.
    """
    grey = np.asarray(image, dtype=np.float64).reshape(np.shape(image)[-2:])
    h, w = grey.shape
    b = max(1, min(h, w) // 7)  # 4 pixels at 28x28: MNIST leaves them empty
    if h <= 2 * b or w <= 2 * b:
        return False
    border = np.concatenate(
        [grey[:b].ravel(), grey[-b:].ravel(), grey[b:-b, :b].ravel(), grey[b:-b, -b:].ravel()]
    ).mean()
    centre = grey[h // 4 : h - h // 4, w // 4 : w - w // 4].mean()
    return bool(border > 0.5 and border > centre)


def _check_size(path: Path, height: int, width: int, size: tuple[int, int], resize: bool):
    if height < 1 or width < 1:
        raise ImageError(f"{path}: image has no pixels ({width}x{height})")
    if not resize and (height, width) != size:
        raise ImageError(
            f"{path}: image is {width}x{height} pixels, the model expects "
            f"{size[1]}x{size[0]}; pass --resize to scale it"
        )
    if height * width > MAX_PIXELS:
        raise ImageError(
            f"{path}: image is {width}x{height} pixels, more than the {MAX_PIXELS:,} "
            f"faltung reads; scale it down first"
        )


def _from_npy(path: Path, size: tuple[int, int], resize: bool, channels: int) -> np.ndarray:
    """(C, H, W) in [0, 1] from one image: grey (H, W), (1, H, W) or (H, W, 1); else
    (C, H, W) or (H, W, C); any of these as a batch of one (1, ...) too."""
    try:
        # Mapped, not read: the header's declared shape is checked before any data is.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ImageError(f"{path}: not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{path}: not a single .npy array")
    shape = array.shape
    if array.ndim == 4 and array.shape[0] == 1:  # a batch of one image
        array = array[0]
    planes = (1, channels)  # grey, or the model's
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] in planes and array.shape[0] not in planes:
        array = np.moveaxis(array, -1, 0)  # (H, W, C)
    if array.ndim != 3 or array.shape[0] not in planes:
        wanted = f"image ({channels}, H, W) or (H, W, {channels}), or " if channels > 1 else ""
        wanted += "grey image (H, W), (1, H, W) or (H, W, 1)"
        raise ImageError(f"{path}: expected one {wanted}, got shape {shape}")
    _check_size(path, array.shape[1], array.shape[2], size, resize)
    # Grey for a colour model is repeated to its channels, as a grey picture file is.
    array = np.repeat(array, channels // array.shape[0], axis=0)
    # As an .npz of training images is read (datasets.arrays): integers are 8-bit levels.
    if array.dtype.kind in "iu":
        if array.min(initial=0) < 0 or array.max(initial=0) > 255:
            raise ImageError(
                f"{path}: integer arrays hold levels 0..255; give other ranges as floats in [0, 1]"
            )
        return array.astype(np.float32) / np.float32(255)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ImageError(f"{path}: float images must hold finite values in [0, 1]")
        return array.astype(np.float32)
    raise ImageError(f"{path}: unsupported array dtype {array.dtype} (use integers or floats)")


def _from_picture(path: Path, size: tuple[int, int], resize: bool, channels: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise ImageError(
            f"{path}: reading image files needs Pillow: pip install 'faltung[images]'"
        ) from None
    try:
        with warnings.catch_warnings():
            # Pillow warns about what it repairs (corrupt EXIF, ...): noise for one prediction.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as picture:
                # The pixel count before decoding (turning keeps it); the sides after, when
                # reading the orientation no longer makes a PNG decode its pixels.
                _check_size(path, picture.height, picture.width, size, resize=True)
                picture.load()
                _check_size(path, *upright_size(picture), size, resize)
                return decode(Image, picture, channels, size) / np.float32(255)
    except ImageError:
        raise
    except Exception as error:
        # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error,
        # IndexError, DecompressionBombError, ... on hostile input: any of them means this
        # one file cannot be read, never that predict should stop.
        reason = str(error) or type(error).__name__
        if "cannot identify image file" in reason:
            reason = f"not a {', '.join(FORMATS)} file"
        raise ImageError(f"{path}: not a readable image ({reason})") from None


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - .npy resizing without Pillow
        raise ImageError("--resize needs Pillow: pip install 'faltung[images]'") from None
    picture = Image.fromarray(image.astype(np.float32), mode="F")
    resized = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # as decode does
    return np.clip(np.asarray(resized, np.float32), 0, 1)
