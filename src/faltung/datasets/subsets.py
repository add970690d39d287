"""Seeded subsets of a split: the same seed and size always name the same images."""

from __future__ import annotations

import hashlib

import numpy as np


def subset_indices(n_total: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted positions of ``size`` of ``n_total`` images, drawn without replacement.

    Every draw starts a generator of its own from ``seed``, so the test images of
    ``faltung train --seed S --test-size N`` are those of ``faltung evaluate --seed S
    --test-size N``, whatever else was drawn before. ``size=None`` means all of them.

    >>> subset_indices(10, 3, seed=0).tolist() == subset_indices(10, 3, seed=0).tolist()
    True
    """
    if size is None:
        return np.arange(n_total)
    if not 0 < size <= n_total:
        raise ValueError(f"cannot draw {size} of {n_total} images")
    return np.sort(np.random.default_rng(seed).choice(n_total, size, replace=False))


def fingerprint(*arrays: np.ndarray) -> str:
    """A digest of shapes, the values of 1-D arrays (labels) and every k-th item of each
    larger array (images), k = len // 4096 (4,096 to 8,191 items): the same data gives the
    same digest. Model files keep such digests: the sampling must not change."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        if array.ndim > 1:
            array = array[:: max(1, len(array) // 4096)]
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
