"""Preprocessing that travels with a model: pixels to [0, 1], then per-channel standardisation.

The means and standard deviations come from the training split and are stored in the model
file, so that ``predict`` and ``evaluate`` feed the network what it was trained on. Images
stay uint8 in memory; :class:`ImageArray` converts a batch to float32 only when it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """x -> (x / 255 - mean) / std for each channel (uint8 input; float input is in [0, 1]).

    The identity (mean 0, std 1) gives exactly the pixels in [0, 1] that the article used.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @classmethod
    def fit(cls, images: np.ndarray, chunk: int = 4096) -> Preprocessing:
        """Per-channel mean and standard deviation of ``images`` (N, C, H, W), in chunks, so
        that a large uint8 set is never copied to float at once. For uint8 images they come
        exactly from a histogram of the 256 levels of each channel."""
        channels = images.shape[1]
        if images.dtype == np.uint8:
            counts = np.zeros((channels, 256), np.int64)
            for start in range(0, len(images), chunk):
                for c in range(channels):
                    counts[c] += np.bincount(
                        images[start : start + chunk, c].ravel(), minlength=256
                    )
            levels = np.arange(256) / 255
            mean = counts @ levels / counts.sum(axis=1)
            var = (counts * np.square(levels - mean[:, None])).sum(axis=1) / counts.sum(axis=1)
        else:
            total, squares = np.zeros(channels), np.zeros(channels)
            for start in range(0, len(images), chunk):
                x = to_unit(images[start : start + chunk]).astype(np.float64)
                total += x.sum(axis=(0, 2, 3))
                squares += np.square(x).sum(axis=(0, 2, 3))
            count = images.size // channels
            mean = total / count
            var = np.maximum(squares / count - mean**2, 0)
        std = np.sqrt(var)
        std = np.where(std > 1e-6, std, 1.0)
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    @classmethod
    def identity(cls, channels: int = 1) -> Preprocessing:
        return cls((0.0,) * channels, (1.0,) * channels)

    @property
    def is_identity(self) -> bool:
        return all(m == 0 for m in self.mean) and all(s == 1 for s in self.std)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.standardise_(to_unit(images))

    def standardise_(self, x: np.ndarray) -> np.ndarray:
        """(x - mean) / std per channel, in place, for float32 pixels ``x`` in [0, 1]."""
        if self.is_identity:
            return x
        if x.shape[1] != len(self.mean):
            raise ValueError(f"images have {x.shape[1]} channels, preprocessing {len(self.mean)}")
        shape = (1, -1, 1, 1)
        x -= np.asarray(self.mean, np.float32).reshape(shape)
        x /= np.asarray(self.std, np.float32).reshape(shape)
        return x

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: dict | None, channels: int = 1) -> Preprocessing:
        if not data:
            return cls.identity(channels)
        mean, std = data.get("mean"), data.get("std")
        if not isinstance(mean, Sequence) or not isinstance(std, Sequence):
            raise ValueError(f"preprocessing: mean and std must be lists, got {data!r}")
        if len(mean) != len(std) or any(float(s) <= 0 for s in std):
            raise ValueError(f"preprocessing: bad mean/std {data!r}")
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))


def to_unit(images: np.ndarray) -> np.ndarray:
    """Integer pixels (levels 0..255, of any integer type) -> float32 in [0, 1], a new
    array; float images are copied as float32."""
    if images.dtype.kind in "iu":
        return images.astype(np.float32) * np.float32(1 / 255)
    return np.array(images, np.float32)


class ImageArray:
    """Images kept as stored (uint8) that index like a float32 array of model inputs.

    ``images[index]`` preprocesses just that batch; the Trainer and ``evaluate`` only ever
    index, so a 100,000-image RGB set costs its uint8 size, not four times that.
    """

    def __init__(self, images: np.ndarray, preprocessing: Preprocessing) -> None:
        self.images, self.preprocessing = images, preprocessing

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.images.shape

    @property
    def ndim(self) -> int:
        return self.images.ndim

    dtype = np.dtype(np.float32)

    def __getitem__(self, index) -> np.ndarray:
        batch = self.images[index]
        return self.preprocessing(batch if batch.ndim == 4 else batch[None])[
            slice(None) if batch.ndim == 4 else 0
        ]

    def transformed(
        self, index: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """The batch ``index`` with ``transform`` applied to its pixels in [0, 1], before
        the standardisation: augmentation's zero padding is black, and its brightness is
        in pixel units, whatever the data's means and deviations."""
        return self.preprocessing.standardise_(transform(to_unit(self.images[index])))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        x = self.preprocessing(self.images)
        return x if dtype is None else x.astype(dtype)
