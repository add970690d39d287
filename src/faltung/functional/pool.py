"""2-D pooling kernels: max, average and the article's general Lp pooling.

Each kernel loops over the kh*kw kernel offsets only: offset (i, j) of every window is one
strided view of the input, so a window reduction is kh*kw element-wise operations on whole
(N, C, Ho, Wo) arrays, with no gather and no copy of the windows. Outputs and gradients
keep the memory layout of the input (channels-last in our networks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._shapes import Padding2D, output_size, positive_pair, resolve_padding
from .layout import crop_padding, empty_nchw, is_channels_last, offset_view, pad_nchw, zeros_nchw


class PoolGeometry(NamedTuple):
    input_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding2D
    out_hw: tuple[int, int]
    channels_last: bool

    @property
    def offsets(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.kernel[0]) for j in range(self.kernel[1])]

    @property
    def overlapping(self) -> bool:
        """Windows share input pixels, so their gradients must be added, not assigned."""
        return self.stride[0] < self.kernel[0] or self.stride[1] < self.kernel[1]

    @property
    def padded_shape(self) -> tuple[int, int, int, int]:
        n, c, h, w = self.input_shape
        return n, c, h + sum(self.padding[0]), w + sum(self.padding[1])


def pool_geometry(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int] | str,
) -> PoolGeometry:
    kernel = positive_pair(kernel_size, "kernel_size")
    stride_hw = kernel if stride is None else positive_pair(stride, "stride")
    pads = resolve_padding(padding, kernel, (1, 1), stride_hw)
    if any(2 * p > k for p, k in zip((pads[0][0], pads[1][0]), kernel)):
        raise ValueError(f"pool padding {pads} must be at most half the kernel {kernel}")
    if x.ndim != 4:
        raise ValueError(f"pooling expects (N, C, H, W) input, got shape {tuple(x.shape)}")
    _, _, h, w = x.shape
    out_hw = (
        output_size(h, kernel[0], stride_hw[0], pads[0]),
        output_size(w, kernel[1], stride_hw[1], pads[1]),
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"pooling window {kernel} does not fit the padded input {(h, w)} with padding {pads}"
        )
    return PoolGeometry(x.shape, kernel, stride_hw, pads, out_hw, is_channels_last(x))


def _spread(geo: PoolGeometry, dtype: np.dtype, slab_grads) -> np.ndarray:
    """dx from per-offset gradients: ``slab_grads(k)`` is what offset k's slab receives."""
    # Assignment suffices when windows neither overlap nor leave gaps to zero: then every
    # input pixel belongs to exactly one window offset.
    tiles = not geo.overlapping and geo.stride == geo.kernel and geo.padding == ((0, 0), (0, 0))
    exact = tiles and all(
        o * k == s for o, k, s in zip(geo.out_hw, geo.kernel, geo.input_shape[2:])
    )
    make = empty_nchw if exact else zeros_nchw
    dxp = make(geo.padded_shape, dtype, geo.channels_last)
    for k, (i, j) in enumerate(geo.offsets):
        slab = offset_view(dxp, i, j, geo.out_hw, geo.stride)
        if geo.overlapping:
            slab += slab_grads(k)
        else:
            slab[...] = slab_grads(k)
    return crop_padding(dxp, geo.padding)


class MaxPoolCache(NamedTuple):
    argmax: np.ndarray  # (N, C, Ho, Wo) int8: which kernel offset won each window
    geometry: PoolGeometry


class MaxPool2x2Cache(NamedTuple):
    """The separable 2x2 path keeps two boolean masks instead of an argmax."""

    bottom_wins: np.ndarray  # (N, Ho, W*C): in each column pair of rows, the bottom won
    right_wins: np.ndarray  # (N, Ho, Wo, C): of the two column winners, the right one won
    geometry: PoolGeometry


def _is_2x2_tiling(geo: PoolGeometry) -> bool:
    return (
        geo.kernel == (2, 2)
        and geo.stride == (2, 2)
        and geo.padding == ((0, 0), (0, 0))
        and geo.channels_last
    )


def _max_pool_2x2(x: np.ndarray, geo: PoolGeometry) -> tuple[np.ndarray, MaxPool2x2Cache]:
    """Separable 2x2/stride-2 max pooling on channels-last memory.

    First the max of each pair of rows: both rows of a pair are contiguous runs of W*C
    values, the cheapest access there is. Then the max of each pair of columns, on half
    the data. Ties go to the first maximum in row-major order, as in PyTorch: the right
    column wins a tie only when its winner is in the top row and the left one's is not.
    """
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


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, MaxPoolCache]:
    """y = max over each window; padding counts as -inf as in PyTorch. x (N, C, H, W).

    The cache keeps only the winning offset of each window (the first one on ties, like
    PyTorch), a small integer array instead of a mask the size of the input.
    """
    geo = pool_geometry(x, kernel_size, stride, padding)
    if _is_2x2_tiling(geo):
        return _max_pool_2x2(x, geo)
    xp = pad_nchw(x, geo.padding, -np.inf)
    views = [offset_view(xp, i, j, geo.out_hw, geo.stride) for i, j in geo.offsets]
    best = views[0].copy(order="K")
    argmax = np.zeros(best.shape, np.int8 if len(views) < 128 else np.int32)
    for k, view in enumerate(views[1:], start=1):
        better = view > best
        np.copyto(argmax, k, where=better)
        np.maximum(best, view, out=best)
    return best, MaxPoolCache(argmax, geo)


def max_pool2d_backward(dy: np.ndarray, cache: MaxPoolCache | MaxPool2x2Cache) -> np.ndarray:
    if isinstance(cache, MaxPool2x2Cache):
        return _max_pool_2x2_backward(dy, cache)
    argmax, geo = cache
    return _spread(geo, dy.dtype, lambda k: dy * (argmax == k))


class AvgPoolCache(NamedTuple):
    geometry: PoolGeometry


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, AvgPoolCache]:
    """y = (1/(kh*kw)) * sum over each window; zero padding is counted (PyTorch's default)."""
    geo = pool_geometry(x, kernel_size, stride, padding)
    xp = pad_nchw(x, geo.padding, 0.0)
    views = [offset_view(xp, i, j, geo.out_hw, geo.stride) for i, j in geo.offsets]
    total = views[0].copy(order="K")
    for view in views[1:]:
        total += view
    total *= 1.0 / len(views)
    return total, AvgPoolCache(geo)


def avg_pool2d_backward(dy: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    geo = cache.geometry
    share = dy * (1.0 / (geo.kernel[0] * geo.kernel[1]))
    return _spread(geo, dy.dtype, lambda k: share)


class LpPoolCache(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    mean_power: np.ndarray
    p: float
    inner: AvgPoolCache


def _power(x: np.ndarray, p: float) -> np.ndarray:
    # Integer p keeps the sign (odd powers), so p=1 is exactly the average; other p use |x|.
    return x**p if float(p).is_integer() else np.abs(x) ** p


def lp_pool2d_forward(
    x: np.ndarray,
    p: float,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, MaxPoolCache | AvgPoolCache | LpPoolCache]:
    """The article's Lp pooling: u = ((1/H^2) * sum over the window of z^P)^(1/P).

    P = 1 is average pooling and P = inf is max pooling; both are delegated to those
    kernels so that the limits hold exactly. Other P work on z^P for integer P (a real
    odd root keeps the sign for odd P) and on |z|^P otherwise.
    """
    if not p > 0:
        raise ValueError(f"Lp pooling needs p > 0, got {p}")
    if math.isinf(p):
        return max_pool2d_forward(x, kernel_size, stride, padding)
    if p == 1:
        return avg_pool2d_forward(x, kernel_size, stride, padding)
    mean_power, inner = avg_pool2d_forward(_power(x, p), kernel_size, stride, padding)
    y = np.sign(mean_power) * np.abs(mean_power) ** (1.0 / p)
    return y, LpPoolCache(x, y, mean_power, p, inner)


def lp_pool2d_backward(
    dy: np.ndarray, cache: MaxPoolCache | AvgPoolCache | LpPoolCache
) -> np.ndarray:
    if isinstance(cache, (MaxPoolCache, MaxPool2x2Cache)):
        return max_pool2d_backward(dy, cache)
    if isinstance(cache, AvgPoolCache):
        return avg_pool2d_backward(dy, cache)
    x, y, mean_power, p, inner = cache
    # du/dm = u / (p*m) and dm/dz = p*z^(p-1)/H^2 (the 1/H^2 is in the average's backward):
    # dz = avg_backward(dy * u/m) * z^(p-1). A window whose mean power is 0 (all zeros after
    # a ReLU, say) has no finite derivative; we give it 0, as a subgradient.
    safe = np.where(mean_power == 0, np.ones((), mean_power.dtype), mean_power)
    ratio = np.where(mean_power == 0, np.zeros((), y.dtype), y / safe)
    dz = avg_pool2d_backward(dy * ratio, inner)
    if float(p).is_integer():
        return dz * x ** (p - 1)
    return dz * np.sign(x) * np.abs(x) ** (p - 1)


def global_avg_pool2d_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, C, H, W) -> (N, C): the mean of each channel map."""
    if x.ndim != 4:
        raise ValueError(f"global average pooling expects (N, C, H, W), got shape {x.shape}")
    return x.mean(axis=(2, 3), dtype=x.dtype), x.shape


def global_avg_pool2d_backward(dy: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    h, w = input_shape[2:]
    share = dy * (1.0 / (h * w))
    return np.broadcast_to(share[:, :, None, None], input_shape).copy()
