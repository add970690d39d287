"""Memory layout helpers: NCHW arrays whose memory is laid out channels-last (NHWC).

Every 4-D array our kernels return is a (N, C, H, W) *view* of an NHWC buffer: the shape
users see is PyTorch's, while the GEMM in convolution reads and writes contiguous channel
runs, and no kernel has to transpose between the two orders. Element-wise NumPy
operations keep the layout of their inputs (order='K'), so the chain stays channels-last.
"""

from __future__ import annotations

import numpy as np

from .shapes import Padding2D


def is_channels_last(x: np.ndarray) -> bool:
    """True when the C axis varies fastest in memory (always true for one channel)."""
    return x.shape[1] == 1 or x.strides[1] <= x.strides[3]


def empty_nchw(shape: tuple[int, int, int, int], dtype: np.dtype, channels_last: bool = True):
    n, c, h, w = shape
    if channels_last:
        return np.empty((n, h, w, c), dtype).transpose(0, 3, 1, 2)
    return np.empty(shape, dtype)


def zeros_nchw(shape: tuple[int, int, int, int], dtype: np.dtype, channels_last: bool = True):
    n, c, h, w = shape
    if channels_last:
        return np.zeros((n, h, w, c), dtype).transpose(0, 3, 1, 2)
    return np.zeros(shape, dtype)


def pad_nchw(x: np.ndarray, padding: Padding2D, value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes, keeping the memory layout; ``x`` itself if nothing to pad."""
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    out = empty_nchw((n, c, h + top + bottom, w + left + right), x.dtype, is_channels_last(x))
    # Fill only the border: writing the interior twice would double the memory traffic.
    out[:, :, :top] = value
    out[:, :, h + top :] = value
    out[:, :, top : h + top, :left] = value
    out[:, :, top : h + top, w + left :] = value
    out[:, :, top : h + top, left : w + left] = x
    return out


class PaddedChunks:
    """Chunks of a batch, padded in one reused channels-last buffer whose zero border is
    written once: only each chunk's interior is copied, and the padded batch is never
    written out. The buffer may be larger than the padded images (``size``, (H, W): zeros
    beyond the bottom and right padding) and of another float type (``dtype``); with
    nothing to pad or convert, a chunk is a view of ``x``."""

    def __init__(
        self,
        x: np.ndarray,
        padding: Padding2D,
        chunk: int,
        size: tuple[int, int] | None = None,
        dtype: np.dtype | None = None,
    ) -> None:
        self.x = x
        (top, bottom), (left, right) = padding
        _, c, h, w = x.shape
        size = (h + top + bottom, w + left + right) if size is None else tuple(size)
        dtype = x.dtype if dtype is None else np.dtype(dtype)
        self.interior = (slice(top, top + h), slice(left, left + w))
        self.copied = size != (h, w) or dtype != x.dtype
        if self.copied:
            self.buffer = zeros_nchw((chunk, c, *size), dtype)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if not self.copied:
            return self.x[start:stop]
        out = self.buffer[: stop - start]
        out[:, :, self.interior[0], self.interior[1]] = self.x[start:stop]
        return out


def crop_padding(x: np.ndarray, padding: Padding2D) -> np.ndarray:
    (top, bottom), (left, right) = padding
    h, w = x.shape[2:]
    return x[:, :, top : h - bottom, left : w - right]


def memory_runs(first: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """1-D views of arrays of one shape, each in the memory order of ``first``, so that
    position k of every view holds the same element; None unless every array is
    contiguous in that order (any number of dimensions)."""
    order = sorted(range(first.ndim), key=lambda axis: -abs(first.strides[axis]))
    views = []
    for array in (first, *others):
        if array.shape != first.shape:
            return None
        permuted = array.transpose(order)
        if not permuted.flags.c_contiguous:
            return None
        views.append(permuted.reshape(-1))
    return tuple(views)
