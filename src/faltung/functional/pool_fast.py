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


def max_pool_forward(
    x: np.ndarray, geo: PoolGeometry, need_cache: bool = True
) -> tuple[np.ndarray, MaxPool2x2Cache | None] | None:
    """(y, cache) by the separable 2x2 path, or None where the general kernel applies."""
    if geo.kernel == geo.stride == (2, 2) and geo.padding == NO_PADDING and is_channels_last(x):
        if not need_cache:
            return _max_pool_2x2_values(x, geo), None
        return _max_pool_2x2(x, geo)
    return None


def max_pool_backward(dy: np.ndarray, cache: object) -> np.ndarray | None:
    """dx for a cache of :func:`max_pool_forward`, or None for the general kernel's cache."""
    if isinstance(cache, MaxPool2x2Cache):
        return _max_pool_2x2_backward(dy, cache)
    return None


# Bytes of input per pass: a chunk's input, masks and intermediate maxima stay in the L2
# cache across the several passes a 2x2 pooling makes (measured: bench/NOTES.md).
CHUNK_BYTES = 1 << 20


def _chunks(n: int, image_bytes: int) -> list[slice]:
    """Slices of the batch of about ``CHUNK_BYTES`` each (at least one image)."""
    size = max(1, CHUNK_BYTES // image_bytes)
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def _row_pairs(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """(N, Ho, 2, 2*Wo*C): each window's two rows, contiguous runs of channels-last memory
    (a view; an odd last row or column is left out)."""
    out_h, out_w = geo.out_hw
    rows = x[:, :, : 2 * out_h, : 2 * out_w].transpose(0, 2, 3, 1)  # NHWC view
    return rows.reshape(x.shape[0], out_h, 2, 2 * out_w * x.shape[1])


def _max_pool_2x2(x: np.ndarray, geo: PoolGeometry) -> tuple[np.ndarray, MaxPool2x2Cache]:
    """Ties go to the first maximum in row-major order, as in PyTorch: the right column
    wins a tie only when its winner is in the top row and the left one's is not.

    The column stage compares runs of C values that lie side by side, and NumPy runs an
    operation on such short strided runs several times slower than on one contiguous run
    (bench/NOTES.md). So each chunk's row maxima are compared as one flat run against
    itself shifted by C: twice the comparisons, all contiguous, into buffers whose even
    runs of C (each window's left column meeting its right one) are then copied out.
    """
    n, c = x.shape[:2]
    out_h, out_w = geo.out_hw
    pairs = _row_pairs(x, geo)
    y = np.empty((n, out_h, out_w, c), x.dtype)
    bottom_wins = np.empty((n, out_h, 2 * out_w * c), bool)
    right_wins = np.empty((n, out_h, out_w, c), bool)
    for part in _chunks(n, pairs[0].nbytes):
        windows = (part.stop - part.start) * out_h * out_w
        top, bottom = pairs[part, :, 0], pairs[part, :, 1]
        wins = np.greater(bottom, top, out=bottom_wins[part]).reshape(-1)
        row_max = np.maximum(top, bottom).reshape(-1)
        left, right = row_max[:-c], row_max[c:]
        # The last C entries of each buffer stay unwritten: they belong to no left column.
        maxima = np.empty_like(row_max)
        np.maximum(left, right, out=maxima[:-c])
        np.copyto(y[part].reshape(windows, c), _left_columns(maxima, windows, c))
        right_won = np.empty(row_max.shape, bool)
        np.greater(right, left, out=right_won[:-c])
        tie = np.equal(right, left)
        tie &= wins[:-c] & ~wins[c:]  # the bottom won on the left, the top on the right
        right_won[:-c] |= tie
        np.copyto(right_wins[part].reshape(windows, c), _left_columns(right_won, windows, c))
    return y.transpose(0, 3, 1, 2), MaxPool2x2Cache(bottom_wins, right_wins, geo)


def _left_columns(flat: np.ndarray, windows: int, c: int) -> np.ndarray:
    """(windows, C) view of the even runs of C in a flat run of 2*windows*C values."""
    return flat.reshape(windows, 2, c)[:, 0]


def _max_pool_2x2_values(x: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """The maxima alone (inference): rows pairwise, then columns, chunk by chunk. With no
    masks to compute, the column stage is one operation, and the flat run of the training
    pass did not make it faster (bench/NOTES.md)."""
    n, c = x.shape[:2]
    out_h, out_w = geo.out_hw
    pairs = _row_pairs(x, geo)
    y = np.empty((n, out_h, out_w, c), x.dtype)
    for part in _chunks(n, pairs[0].nbytes):
        column_max = np.maximum(pairs[part, :, 0], pairs[part, :, 1])
        column_max = column_max.reshape(-1, out_h, out_w, 2, c)
        np.maximum(column_max[..., 0, :], column_max[..., 1, :], out=y[part])
    return y.transpose(0, 3, 1, 2)


def _max_pool_2x2_backward(dy: np.ndarray, cache: MaxPool2x2Cache) -> np.ndarray:
    bottom_wins, right_wins, geo = cache
    n, c, h, w = geo.input_shape
    out_h, out_w = geo.out_hw
    g = dy.transpose(0, 2, 3, 1)  # (N, Ho, Wo, C)
    if (h, w) == (2 * out_h, 2 * out_w):
        dx = np.empty((n, h, w, c), dy.dtype)
    else:  # an odd last row or column gets no gradient
        dx = np.zeros((n, h, w, c), dy.dtype)
    covered = dx[:, : 2 * out_h, : 2 * out_w].reshape(n, out_h, 2, 2 * out_w * c)
    # Undo the column stage, then the row stage: each gradient goes to its stage's winner.
    for part in _chunks(n, 4 * g[0].nbytes):
        m = part.stop - part.start
        columns = np.empty((m, out_h, out_w, 2, c), dy.dtype)
        np.multiply(g[part], ~right_wins[part], out=columns[..., 0, :])
        np.multiply(g[part], right_wins[part], out=columns[..., 1, :])
        columns = columns.reshape(m, out_h, 2 * out_w * c)
        np.multiply(columns, ~bottom_wins[part], out=covered[part, :, 0])
        np.multiply(columns, bottom_wins[part], out=covered[part, :, 1])
    return dx.transpose(0, 3, 1, 2)
