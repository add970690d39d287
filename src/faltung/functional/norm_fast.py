"""Batch normalisation, fast: ``norm``'s formulas (read those first) with fewer passes.

Three things make ``norm``'s plain NumPy slow on the channels-last maps our convolutions
return: reductions over axes (0, 2, 3) walk memory with a stride; a (1, C, 1, 1) operand
broadcast over channels-last memory gives NumPy inner loops of only C values; and every
expression makes a fresh array the size of the batch. Here each image is one row of
``L = C*H*W`` values in memory order, so

- a per-channel sum is a matrix-vector product over the batch (``ones @ rows``) and then
  a sum over the row's positions of each channel, in float64;
- a per-channel scale is one row of L values (the channel's value at each position), and
  every element-wise pass has inner loops of L values;
- the batch is worked through in chunks of about ``CHUNK_BYTES``, whose temporaries stay in
  the cache.

The cache keeps the centred input ``x - mean`` rather than ``x_hat``: backward needs only
its products with per-channel factors, so ``x_hat = centred * inv_std`` is never written.
Eval mode centres, scales and shifts each chunk while it is in cache, and its cache (for
the explainer's gradients) is the input itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .layout import is_channels_last

# Bytes of one chunk of rows: a chunk and its temporaries stay in the 1 MiB L2 cache.
CHUNK_BYTES = 1 << 19


class ImageRows(NamedTuple):
    """How an (N, C) or (N, C, H, W) array is seen as (N, L) rows in memory order.

    A row is (positions, C) for channels-last memory, (C, positions) otherwise, and (C,)
    for features, so a channel's values are a column or a row of that block.
    """

    shape: tuple[int, ...]  # the array's (N, C[, H, W]) shape
    channels_last: bool  # memory order N, H, W, C (else N, C, H, W)

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        """L: the values of one row."""
        return math.prod(self.shape[1:])

    def rows(self, a: np.ndarray) -> np.ndarray:
        """(N, L) view of ``a`` (or of a contiguous copy where the memory has no such view)."""
        if len(self.shape) == 4 and self.channels_last:
            a = a.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(a).reshape(self.shape[0], self.width)

    def array(self, rows: np.ndarray) -> np.ndarray:
        """The (N, C[, H, W]) view of ``rows`` (inverse of :meth:`rows`)."""
        if len(self.shape) == 4 and self.channels_last:
            n, c, h, w = self.shape
            return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return rows.reshape(self.shape)

    def _block(self, row: np.ndarray) -> np.ndarray:
        """A row as (positions, C): channels along the last axis, whatever the memory order."""
        if self.channels_last:
            return row.reshape(-1, self.channels)
        return row.reshape(self.channels, -1).T

    def per_position(self, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """(L,) row holding each channel's value at that channel's positions."""
        out = np.empty(self.width, dtype)
        self._block(out)[...] = values
        return out

    def channel_sums(self, column_sums: np.ndarray) -> np.ndarray:
        """(C,) float64 sums of a row's positions, channel by channel (a matrix-vector
        product: a reduction over the block's rows would loop over C values at a time)."""
        block = self._block(column_sums.astype(np.float64, copy=False))
        return np.ones(len(block)) @ block

    def chunks(self, itemsize: int) -> list[slice]:
        """Row ranges of about ``CHUNK_BYTES``; one empty range for an empty batch, so that
        the first chunk always sizes the scratch buffers."""
        n = self.shape[0]
        size = max(1, CHUNK_BYTES // (self.width * itemsize))
        return [slice(start, min(n, start + size)) for start in range(0, max(n, 1), size)]


def image_rows(x: np.ndarray) -> ImageRows:
    """How to read ``x`` as rows: a channels-last map as (N, H*W*C), any other map as
    (N, C*H*W), (N, C) features as they are (:meth:`ImageRows.rows` copies where needed)."""
    return ImageRows(x.shape, x.ndim == 4 and is_channels_last(x) and x.shape[1] > 1)


def _promoted(*arrays: np.ndarray | None) -> np.dtype:
    """The dtype NumPy gives an expression of these arrays (Nones left out), as in norm."""
    return np.result_type(*(a for a in arrays if a is not None))


def _scale(inv_std64: np.ndarray, gamma: np.ndarray | None) -> np.ndarray:
    """(C,) float64 gamma / sqrt(var + eps): what multiplies x - mean (or dy)."""
    return inv_std64 if gamma is None else inv_std64 * gamma


def _column_sums(rows: np.ndarray, out: np.ndarray) -> None:
    """out += the sum of ``rows`` over its first axis, as a matrix-vector product."""
    out += np.ones(len(rows), rows.dtype) @ rows


# Sums a float64 buffer, in place, over the shards of a batch split over threads
# (``faltung.parallel.ShardGroup``), so that the statistics are the whole batch's.
Allreduce = Callable[[np.ndarray], np.ndarray]


class FastBatchNormCache(NamedTuple):
    centred: np.ndarray  # (N, L) x - mean, rows in memory order
    inv_std: np.ndarray  # (C,) 1/sqrt(var + eps)
    gamma: np.ndarray | None  # (C,) scale, None without affine parameters
    layout: ImageRows
    mean: np.ndarray  # (C,) batch mean, for the running statistics
    var: np.ndarray  # (C,) biased batch variance, for the running statistics
    count: int  # values per channel the statistics saw (over every shard)
    allreduce: Allreduce | None


def batch_norm_forward(
    x: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
    allreduce: Allreduce | None = None,
) -> tuple[np.ndarray, FastBatchNormCache]:
    """y = gamma * (x - mu) / sqrt(var + eps) + beta with the batch's mean and variance
    (with ``allreduce``: of the whole batch that ``x`` is one shard of)."""
    layout = image_rows(x)
    rows, dtype = layout.rows(x), x.dtype
    column = np.zeros(rows.shape[1], dtype)
    _column_sums(rows, column)
    sums = np.concatenate([[x.size // layout.channels], layout.channel_sums(column)])
    if allreduce is not None:
        allreduce(sums)
    count = int(sums[0])
    mean64 = sums[1:] / count
    mean_row = layout.per_position(mean64, dtype)

    # The variance from the centred values (two passes, as norm does): sum of squares of
    # x - mean keeps float32's precision where E[x^2] - mean^2 would cancel.
    centred = np.empty_like(rows)
    column[:] = 0
    chunks = layout.chunks(x.itemsize)
    square = np.empty((chunks[0].stop, rows.shape[1]), dtype)
    for chunk in chunks:
        c = np.subtract(rows[chunk], mean_row, out=centred[chunk])
        _column_sums(np.multiply(c, c, out=square[: len(c)]), column)
    squares = layout.channel_sums(column)
    if allreduce is not None:
        allreduce(squares)
    var64 = squares / count
    inv_std64 = 1 / np.sqrt(var64 + eps)

    out_dtype = _promoted(x, gamma, beta)  # as norm's x_hat * gamma + beta
    scale = layout.per_position(_scale(inv_std64, gamma), out_dtype)
    shift = None if beta is None else layout.per_position(beta, out_dtype)
    y = np.empty(rows.shape, out_dtype)
    for chunk in chunks:
        out = np.multiply(centred[chunk], scale, out=y[chunk])
        if shift is not None:
            out += shift
    mean, var, inv_std = (v.astype(dtype) for v in (mean64, var64, inv_std64))
    cache = FastBatchNormCache(centred, inv_std, gamma, layout, mean, var, count, allreduce)
    return layout.array(y), cache


def batch_norm_backward(
    dy: np.ndarray, cache: FastBatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """norm's dx = inv_std/M * (M*g - sum(g) - x_hat*sum(g*x_hat)), g = dy*gamma, written as
    dx = a*dy - b*centred - k with per-channel a, b and k. A shard's sums go over every
    shard (the cache's ``allreduce``); dgamma and dbeta stay the shard's own parts."""
    centred, inv_std, gamma, layout = cache[:4]
    dtype = _promoted(dy, centred, gamma)
    rows = layout.rows(dy)
    count = cache.count
    dy_column = np.zeros(rows.shape[1], dtype)
    dyc_column = np.zeros(rows.shape[1], dtype)
    chunks = layout.chunks(dy.itemsize)
    product = np.empty((chunks[0].stop, rows.shape[1]), dtype)
    for chunk in chunks:
        _column_sums(rows[chunk], dy_column)
        p = np.multiply(rows[chunk], centred[chunk], out=product[: chunk.stop - chunk.start])
        _column_sums(p, dyc_column)
    inv_std64 = inv_std.astype(np.float64)
    dbeta64 = layout.channel_sums(dy_column)
    dgamma64 = layout.channel_sums(dyc_column) * inv_std64  # sum(dy * x_hat)
    sums = np.concatenate([dbeta64, dgamma64])
    if cache.allreduce is not None:
        cache.allreduce(sums)
    g_sum, gx_sum = sums[: layout.channels], sums[layout.channels :]

    a = _scale(inv_std64, gamma)
    a_row = layout.per_position(a, dtype)
    b_row = layout.per_position(a * inv_std64 * gx_sum / count, dtype)
    k_row = layout.per_position(a * g_sum / count, dtype)
    dx = np.empty(rows.shape, dtype)
    for chunk in chunks:
        d = np.multiply(rows[chunk], a_row, out=dx[chunk])
        d -= np.multiply(centred[chunk], b_row, out=product[: len(d)])
        d -= k_row
    dx = layout.array(dx)
    if gamma is None:
        return dx, None, None
    return dx, dgamma64.astype(dtype), dbeta64.astype(dtype)


class FastBatchNormInferenceCache(NamedTuple):
    x: np.ndarray  # (N, L) the input rows
    mean: np.ndarray  # (C,) the running mean
    inv_std: np.ndarray  # (C,) 1/sqrt(running_var + eps)
    gamma: np.ndarray | None
    layout: ImageRows


def batch_norm_inference_forward(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, FastBatchNormInferenceCache]:
    """Eval mode: y = (x - running_mean) * scale + beta with scale = gamma /
    sqrt(running_var + eps), per-position rows and chunks as in training."""
    layout = image_rows(x)
    rows, dtype = layout.rows(x), x.dtype
    out_dtype = _promoted(x, gamma, beta)  # as norm's x_hat * gamma + beta
    inv_std64 = 1 / np.sqrt(running_var.astype(np.float64) + eps)
    scale = layout.per_position(_scale(inv_std64, gamma), out_dtype)
    mean_row = layout.per_position(running_mean, dtype)
    shift = None if beta is None else layout.per_position(beta, out_dtype)
    y = np.empty(rows.shape, out_dtype)
    # Centred first, not x * scale + (beta - mean * scale): for a mean far larger than the
    # spread, that sum of two large terms would cancel and lose float32's precision.
    for chunk in layout.chunks(x.itemsize):
        out = np.subtract(rows[chunk], mean_row, out=y[chunk])
        out *= scale
        if shift is not None:
            out += shift
    mean, inv_std = running_mean.astype(dtype), inv_std64.astype(dtype)
    return layout.array(y), FastBatchNormInferenceCache(rows, mean, inv_std, gamma, layout)


def batch_norm_inference_backward(
    dy: np.ndarray, cache: FastBatchNormInferenceCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A per-channel affine map: dx = dy * scale, dgamma = sum(dy * x_hat), dbeta = sum(dy)."""
    x, mean, inv_std, gamma, layout = cache
    dtype = _promoted(dy, x, gamma)
    rows = layout.rows(dy)
    inv_std64 = inv_std.astype(np.float64)
    scale = layout.per_position(_scale(inv_std64, gamma), dtype)
    dx = np.empty(rows.shape, dtype)
    chunks = layout.chunks(dy.itemsize)
    dy_column = np.zeros(rows.shape[1], dtype)
    dyc_column = np.zeros(rows.shape[1], dtype)
    mean_row = layout.per_position(mean, dtype)
    product = np.empty((chunks[0].stop, rows.shape[1]), dtype)
    for chunk in chunks:
        np.multiply(rows[chunk], scale, out=dx[chunk])
        if gamma is not None:
            _column_sums(rows[chunk], dy_column)
            p = np.subtract(x[chunk], mean_row, out=product[: chunk.stop - chunk.start])
            _column_sums(np.multiply(p, rows[chunk], out=p), dyc_column)
    dx = layout.array(dx)
    if gamma is None:
        return dx, None, None
    dgamma = layout.channel_sums(dyc_column) * inv_std64
    return dx, dgamma.astype(dtype), layout.channel_sums(dy_column).astype(dtype)
