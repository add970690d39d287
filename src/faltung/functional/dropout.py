"""Inverted dropout (Srivastava et al., 2014): scale at training time, identity at eval."""

from __future__ import annotations

import numpy as np


def dropout_forward(
    x: np.ndarray, p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Zero each element with probability p and scale the rest by 1/(1-p).

    Cache: the scaled keep-mask (same shape as x), or None when p = 0.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
    if p == 0:
        return x, None
    keep = rng.random(x.shape, dtype=np.float32) >= p
    mask = keep * np.asarray(1.0 / (1.0 - p), dtype=x.dtype)
    return x * mask, mask


def dropout_backward(dy: np.ndarray, cache: np.ndarray | None) -> np.ndarray:
    return dy if cache is None else dy * cache
