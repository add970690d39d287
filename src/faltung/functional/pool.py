"""2-D pooling: max, average, and the article's general Lp pooling; the fast kernels.

    max:  y[n, c, h, w] = max over (i, j) of x_pad[n, c, s*h + i, s*w + j]
    avg:  y[n, c, h, w] = (1 / (kh*kw)) * sum over (i, j) of x_pad[n, c, s*h + i, s*w + j]
    Lp:   y = ((1 / (kh*kw)) * sum over the window of x^p)^(1/p)   (p=1 avg, p=inf max)

The plain versions are in :mod:`faltung.functional.reference`. Here each kernel loops
over the kh*kw kernel offsets only: offset (i, j) of every window is one strided view of
the input, so a window reduction is kh*kw element-wise operations on whole (N, C, Ho, Wo)
arrays, with no gather and no copy of the windows. Outputs and gradients keep the memory
layout of their inputs (channels-last in our networks). 2x2 max pooling has a faster
separable path in ``pool_fast``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from . import pool_fast
from .layout import crop_padding, empty_nchw, is_channels_last, pad_nchw, zeros_nchw
from .shapes import PoolGeometry, pool_geometry
from .windows import offset_view


def _offset_views(xp: np.ndarray, geo: PoolGeometry) -> list[np.ndarray]:
    """The kh*kw strided (N, C, Ho, Wo) views, one per kernel offset, in row-major order."""
    return [offset_view(xp, i, j, geo.out_hw, geo.stride) for i, j in geo.offsets]


def _spread(
    geo: PoolGeometry,
    dy: np.ndarray,
    channels_last: bool,
    slab_grad: Callable[[int], np.ndarray],
) -> np.ndarray:
    """dx from per-offset gradients: ``slab_grad(k)`` is what kernel offset k's slab gets.

    dx takes the input's memory layout, which the layer before expects, whatever dy's is.
    """
    # When the windows tile the input exactly, every pixel belongs to one offset's slab,
    # so assignment suffices and the buffer need not be zeroed first.
    make = empty_nchw if geo.tiles_exactly else zeros_nchw
    dxp = make(geo.padded_shape, dy.dtype, channels_last)
    for k, (i, j) in enumerate(geo.offsets):
        slab = offset_view(dxp, i, j, geo.out_hw, geo.stride)
        if geo.overlapping:
            slab += slab_grad(k)
        else:
            slab[...] = slab_grad(k)
    return crop_padding(dxp, geo.padding)


class MaxPoolCache(NamedTuple):
    argmax: np.ndarray  # (N, C, Ho, Wo) int8: which kernel offset won each window
    geometry: PoolGeometry
    channels_last: bool  # the input's memory layout


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    *,
    need_cache: bool = True,
) -> tuple[np.ndarray, MaxPoolCache | pool_fast.MaxPool2x2Cache | None]:
    """x (N, C, H, W) -> y (N, C, Ho, Wo); padding counts as -inf, as in PyTorch.

    The cache keeps only the winning offset of each window (the first one on ties, like
    PyTorch), a small integer array instead of a mask the size of the input. With
    ``need_cache=False`` (inference) the winners are not recorded and the cache is None.
    """
    geo = pool_geometry(x.shape, kernel_size, stride, padding)
    special = pool_fast.max_pool_forward(x, geo, need_cache)
    if special is not None:
        return special
    views = _offset_views(pad_nchw(x, geo.padding, -np.inf), geo)
    best = views[0].copy(order="K")
    if not need_cache:
        for view in views[1:]:
            np.maximum(best, view, out=best)
        return best, None
    argmax = np.zeros(best.shape, np.int8 if len(views) < 128 else np.int32)
    for k, view in enumerate(views[1:], start=1):
        np.copyto(argmax, k, where=view > best)
        np.maximum(best, view, out=best)
    return best, MaxPoolCache(argmax, geo, is_channels_last(x))


def max_pool2d_backward(
    dy: np.ndarray, cache: MaxPoolCache | pool_fast.MaxPool2x2Cache
) -> np.ndarray:
    """Each window's gradient goes to the input pixel that won it."""
    special = pool_fast.max_pool_backward(dy, cache)
    if special is not None:
        return special
    argmax, geo, channels_last = cache
    return _spread(geo, dy, channels_last, lambda k: dy * (argmax == k))


class AvgPoolCache(NamedTuple):
    geometry: PoolGeometry
    channels_last: bool  # the input's memory layout


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, AvgPoolCache]:
    """x (N, C, H, W) -> y (N, C, Ho, Wo); zero padding counts (PyTorch's default)."""
    geo = pool_geometry(x.shape, kernel_size, stride, padding)
    views = _offset_views(pad_nchw(x, geo.padding, 0.0), geo)
    total = views[0].copy(order="K")
    for view in views[1:]:
        total += view
    total *= 1.0 / len(views)
    return total, AvgPoolCache(geo, is_channels_last(x))


def avg_pool2d_backward(dy: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    """Every pixel of a window gets 1/(kh*kw) of the window's gradient."""
    geo = cache.geometry
    share = dy * (1.0 / (geo.kernel[0] * geo.kernel[1]))
    return _spread(geo, dy, cache.channels_last, lambda k: share)


class LpPoolCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W) input
    y: np.ndarray  # (N, C, Ho, Wo) output
    mean_power: np.ndarray  # (N, C, Ho, Wo): the windows' means of x^p
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
) -> tuple[np.ndarray, MaxPoolCache | pool_fast.MaxPool2x2Cache | AvgPoolCache | LpPoolCache]:
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
    dy: np.ndarray,
    cache: MaxPoolCache | pool_fast.MaxPool2x2Cache | AvgPoolCache | LpPoolCache,
) -> np.ndarray:
    if isinstance(cache, AvgPoolCache):
        return avg_pool2d_backward(dy, cache)
    if not isinstance(cache, LpPoolCache):
        return max_pool2d_backward(dy, cache)
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


class GlobalAvgPoolCache(NamedTuple):
    input_shape: tuple[int, int, int, int]  # (N, C, H, W)


def global_avg_pool2d_forward(x: np.ndarray) -> tuple[np.ndarray, GlobalAvgPoolCache]:
    """(N, C, H, W) -> (N, C): the mean of each channel map."""
    if x.ndim != 4:
        raise ValueError(f"global average pooling expects (N, C, H, W), got shape {x.shape}")
    return x.mean(axis=(2, 3), dtype=x.dtype), GlobalAvgPoolCache(x.shape)


def global_avg_pool2d_backward(dy: np.ndarray, cache: GlobalAvgPoolCache) -> np.ndarray:
    h, w = cache.input_shape[2:]
    share = dy * (1.0 / (h * w))
    return np.broadcast_to(share[:, :, None, None], cache.input_shape).copy()
