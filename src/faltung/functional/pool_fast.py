"""Faster pooling for particular shapes, behind one dispatch function per direction.

2x2 max pooling with stride 2 on channels-last memory (every LeNet's pooling) is
separable: the max of each pair of rows, then of each pair of columns on half the data.
Both rows of a pair are contiguous runs of W*C values, the cheapest access there is, and
the cache is two boolean masks instead of an argmax.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .layout import is_channels_last
from .shapes import NO_PADDING, PoolGeometry


class MaxPool2x2Cache(NamedTuple):
    bottom_wins: np.ndarray  # (N, Ho, 2*Wo*C) bool: in each pair of rows, the bottom won
    right_wins: np.ndarray  # (N, Ho, Wo, C) bool: of the two column winners, the right won
    geometry: PoolGeometry


def max_pool_forward(x: np.ndarray, geo: PoolGeometry) -> tuple[np.ndarray, MaxPool2x2Cache] | None:
    """(y, cache) by the separable 2x2 path, or None where the general kernel applies."""
    if geo.kernel == geo.stride == (2, 2) and geo.padding == NO_PADDING and is_channels_last(x):
        return _max_pool_2x2(x, geo)
    return None


def max_pool_backward(dy: np.ndarray, cache: object) -> np.ndarray | None:
    """dx for a cache of :func:`max_pool_forward`, or None for the general kernel's cache."""
    if isinstance(cache, MaxPool2x2Cache):
        return _max_pool_2x2_backward(dy, cache)
    return None


def _max_pool_2x2(x: np.ndarray, geo: PoolGeometry) -> tuple[np.ndarray, MaxPool2x2Cache]:
    """Ties go to the first maximum in row-major order, as in PyTorch: the right column
    wins a tie only when its winner is in the top row and the left one's is not."""
    n, c = x.shape[:2]
    out_h, out_w = geo.out_hw
    rows = x[:, :, : 2 * out_h, : 2 * out_w].transpose(0, 2, 3, 1)  # NHWC view
    pairs = rows.reshape(n, out_h, 2, 2 * out_w * c)
    top, bottom = pairs[:, :, 0], pairs[:, :, 1]
    bottom_wins = bottom > top
    column_max = np.maximum(top, bottom).reshape(n, out_h, out_w, 2, c)
    left, right = column_max[..., 0, :], column_max[..., 1, :]
    wins = bottom_wins.reshape(n, out_h, out_w, 2, c)
    right_wins = (right > left) | ((right == left) & wins[..., 0, :] & ~wins[..., 1, :])
    y = np.maximum(left, right).transpose(0, 3, 1, 2)
    return y, MaxPool2x2Cache(bottom_wins, right_wins, geo)


def _max_pool_2x2_backward(dy: np.ndarray, cache: MaxPool2x2Cache) -> np.ndarray:
    bottom_wins, right_wins, geo = cache
    n, c, h, w = geo.input_shape
    out_h, out_w = geo.out_hw
    g = dy.transpose(0, 2, 3, 1)  # (N, Ho, Wo, C)
    # Undo the column stage, then the row stage: each gradient goes to its stage's winner.
    columns = np.empty((n, out_h, out_w, 2, c), dy.dtype)
    np.multiply(g, ~right_wins, out=columns[..., 0, :])
    np.multiply(g, right_wins, out=columns[..., 1, :])
    columns = columns.reshape(n, out_h, 2 * out_w * c)
    covered = np.empty((n, out_h, 2, 2 * out_w * c), dy.dtype)
    np.multiply(columns, ~bottom_wins, out=covered[:, :, 0])
    np.multiply(columns, bottom_wins, out=covered[:, :, 1])
    covered = covered.reshape(n, 2 * out_h, 2 * out_w, c)
    if (h, w) != (2 * out_h, 2 * out_w):  # an odd last row or column gets no gradient
        dx = np.zeros((n, h, w, c), dy.dtype)
        dx[:, : 2 * out_h, : 2 * out_w] = covered
        covered = dx
    return covered.transpose(0, 3, 1, 2)
