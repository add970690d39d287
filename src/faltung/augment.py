"""Data augmentation in NumPy: random transforms of a whole batch at once, from a generator.

Each transform is a pure function of the batch and its random draws; :class:`Augment`
draws the parameters for every image from the generator it is given. The Trainer gives it
a generator seeded with (seed, epoch, step), so the same seed gives the same batches and a
resumed run sees exactly what an uninterrupted one would have.

- ``shift``: whole-pixel translations with zero padding (a random crop of a padded image);
- ``flip``: horizontal mirror images (off for digits: a mirrored 2 is no 2);
- ``affine``: small rotations and scalings through one bilinear warp;
- ``brightness`` and ``contrast``: per-image offsets and gains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRANSFORMS = ("shift", "flip", "affine", "brightness", "contrast")


def shift_images(x: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Move image n down by ``dy[n]`` and right by ``dx[n]`` whole pixels; what comes in
    from outside is zero. x: (N, C, H, W)."""
    n, c, h, w = x.shape
    pad = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    rows = (pad - np.asarray(dy))[:, None] + np.arange(h)  # (N, H): source row of each output
    cols = (pad - np.asarray(dx))[:, None] + np.arange(w)
    return padded[
        np.arange(n)[:, None, None, None],
        np.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def affine_warp(x: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Output pixel p of image n samples the input at A_n (p - centre) + centre, bilinearly,
    with zeros outside. matrices: (N, 2, 2) acting on (row, column)."""
    n, _, h, w = x.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1) - centre
    source = np.einsum("nij,hwj->nhwi", matrices, grid) + centre  # (N, H, W, 2)
    top_left = np.floor(source).astype(np.int64)
    frac = (source - top_left).astype(x.dtype)
    out = np.zeros_like(x)
    images = np.arange(n)[:, None, None]
    for oy, ox in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, q = top_left[..., 0] + oy, top_left[..., 1] + ox
        weight = (frac[..., 0] if oy else 1 - frac[..., 0]) * (
            frac[..., 1] if ox else 1 - frac[..., 1]
        )
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        values = x[images, :, np.clip(r, 0, h - 1), np.clip(q, 0, w - 1)]  # (N, H, W, C)
        out += np.moveaxis(values * (weight * inside)[..., None], -1, 1)
    return out


def rotation_scale(angles: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(N, 2, 2) matrices that rotate by ``angles`` (radians) and scale by ``scales``."""
    cos, sin = np.cos(angles) / scales, np.sin(angles) / scales
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)


class Augment:
    """Random transforms of a batch (N, C, H, W) float images, in the order of TRANSFORMS.

    >>> augment = Augment(["shift", "flip"])
    >>> x = np.zeros((4, 1, 28, 28), np.float32)
    >>> augment(x, np.random.default_rng(0)).shape
    (4, 1, 28, 28)
    """

    def __init__(
        self,
        names: Sequence[str],
        max_shift: int = 2,
        max_degrees: float = 10.0,
        max_scale: float = 0.1,
        brightness: float = 0.2,
        contrast: float = 0.2,
    ) -> None:
        unknown = [name for name in names if name not in TRANSFORMS]
        if unknown:
            raise ValueError(
                f"unknown augmentation {unknown[0]!r}; choose from {', '.join(TRANSFORMS)}"
            )
        self.names = tuple(name for name in TRANSFORMS if name in names)
        self.max_shift, self.max_degrees, self.max_scale = max_shift, max_degrees, max_scale
        self.brightness, self.contrast = brightness, contrast

    def describe(self) -> str:
        """The transforms and their ranges, for the run's banner.

        >>> Augment(["shift", "flip"]).describe()
        'shifts of up to 2 pixels, horizontal flips'
        """
        parts = {
            "shift": f"shifts of up to {self.max_shift} pixels",
            "flip": "horizontal flips",
            "affine": f"rotations of up to {self.max_degrees:g} degrees and scaling by up to "
            f"{self.max_scale:.0%}",
            "brightness": f"brightness +-{self.brightness:g}",
            "contrast": f"contrast x(1 +-{self.contrast:g})",
        }
        return ", ".join(parts[name] for name in self.names)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(x)
        if "shift" in self.names:
            dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, (2, n))
            x = shift_images(x, dy, dx)
        if "flip" in self.names:
            flip = rng.random(n) < 0.5
            x = np.where(flip[:, None, None, None], x[..., ::-1], x)
        if "affine" in self.names:
            angles = np.deg2rad(rng.uniform(-self.max_degrees, self.max_degrees, n))
            scales = rng.uniform(1 - self.max_scale, 1 + self.max_scale, n)
            x = affine_warp(x, rotation_scale(angles, scales))
        if "brightness" in self.names:
            offset = rng.uniform(-self.brightness, self.brightness, n).astype(x.dtype)
            x = x + offset[:, None, None, None]
        if "contrast" in self.names:
            gain = rng.uniform(1 - self.contrast, 1 + self.contrast, n).astype(x.dtype)
            mean = x.mean(axis=(1, 2, 3), keepdims=True)
            x = (x - mean) * gain[:, None, None, None] + mean
        return np.ascontiguousarray(x, dtype=np.float32)


def parse_augment(text: str | None, digits: bool = False) -> Augment | None:
    """``'auto'`` (shifts, plus small rotations for digits or flips for anything else),
    ``'none'``, or a comma-separated list of TRANSFORMS."""
    if not text or text == "none":  # no flag, or a run saved before '' was refused
        return None
    if text == "auto":
        return Augment(["shift", "affine"] if digits else ["shift", "flip"])
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{text!r} names no augmentation; give some of {', '.join(TRANSFORMS)}")
    return Augment(names)
