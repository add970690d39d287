"""2-D pooling kernels: max, average and the article's general Lp pooling.

Non-overlapping windows (stride == kernel, no padding) are a pure reshape of the input;
any other geometry uses the same strided window view as convolution, and its backward
loops over the kernel offsets only (see :func:`faltung.functional.conv.scatter_windows`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._shapes import Padding2D, output_size, positive_pair, resolve_padding
from .conv import crop_padding, pad_nchw, scatter_windows, sliding_windows


class PoolGeometry(NamedTuple):
    input_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding2D
    out_hw: tuple[int, int]

    @property
    def is_tiling(self) -> bool:
        """Windows tile the input exactly: a reshape, no gather."""
        return (
            self.stride == self.kernel
            and self.padding == ((0, 0), (0, 0))
            and self.out_hw[0] * self.kernel[0] == self.input_shape[2]
            and self.out_hw[1] * self.kernel[1] == self.input_shape[3]
        )


def pool_geometry(
    input_shape: tuple[int, ...],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int] | str,
) -> PoolGeometry:
    kernel = positive_pair(kernel_size, "kernel_size")
    stride_hw = kernel if stride is None else positive_pair(stride, "stride")
    pads = resolve_padding(padding, kernel, (1, 1), stride_hw)
    if any(2 * p > k for p, k in zip((pads[0][0], pads[1][0]), kernel)):
        raise ValueError(f"pool padding {pads} must be at most half the kernel {kernel}")
    if len(input_shape) != 4:
        raise ValueError(f"pooling expects (N, C, H, W) input, got shape {tuple(input_shape)}")
    _, _, h, w = input_shape
    out_hw = (
        output_size(h, kernel[0], stride_hw[0], pads[0]),
        output_size(w, kernel[1], stride_hw[1], pads[1]),
    )
    if min(out_hw) < 1:
        raise ValueError(
            f"pooling window {kernel} does not fit the padded input {(h, w)} with padding {pads}"
        )
    return PoolGeometry(tuple(input_shape), kernel, stride_hw, pads, out_hw)


def _windows(x: np.ndarray, geo: PoolGeometry, pad_value: float) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) view (tiling case) or strided view of the padded input."""
    n, c, _, _ = x.shape
    (out_h, out_w), (kh, kw) = geo.out_hw, geo.kernel
    if geo.is_tiling:
        return x.reshape(n, c, out_h, kh, out_w, kw).transpose(0, 1, 2, 4, 3, 5)
    return sliding_windows(pad_nchw(x, geo.padding, pad_value), geo.kernel, geo.out_hw, geo.stride)


def _scatter(window_grads: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """Adjoint of :func:`_windows`: window gradients (N, C, Ho, Wo, kh, kw) -> dx (N, C, H, W)."""
    n, c, h, w = geo.input_shape
    if geo.is_tiling:
        return window_grads.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
    padded = (n, c, h + sum(geo.padding[0]), w + sum(geo.padding[1]))
    return crop_padding(scatter_windows(window_grads, padded, geo.stride), geo.padding)


class MaxPoolCache(NamedTuple):
    argmax: np.ndarray  # (N, C, Ho, Wo) flat index of the winner inside its window
    geometry: PoolGeometry


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, MaxPoolCache]:
    """y = max over each window; padding counts as -inf as in PyTorch. x (N, C, H, W).

    The cache keeps only the argmax of each window (the first one on ties, like PyTorch),
    a small integer array instead of a mask the size of the input.
    """
    geo = pool_geometry(x.shape, kernel_size, stride, padding)
    windows = _windows(x, geo, -np.inf)
    n, c, out_h, out_w, kh, kw = windows.shape
    flat = windows.reshape(n, c, out_h, out_w, kh * kw)
    argmax = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return y, MaxPoolCache(argmax.astype(np.int8 if kh * kw < 128 else np.int32), geo)


def max_pool2d_backward(dy: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    argmax, geo = cache
    kh, kw = geo.kernel
    # One-hot over the window positions: kh*kw comparisons of small integer arrays, no gather.
    onehot = argmax[..., None] == np.arange(kh * kw, dtype=argmax.dtype)
    window_grads = np.where(onehot, dy[..., None], np.zeros((), dy.dtype))
    return _scatter(window_grads.reshape(*dy.shape, kh, kw), geo)


class AvgPoolCache(NamedTuple):
    geometry: PoolGeometry


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
) -> tuple[np.ndarray, AvgPoolCache]:
    """y = (1/(kh*kw)) * sum over each window; zero padding is counted (PyTorch's default)."""
    geo = pool_geometry(x.shape, kernel_size, stride, padding)
    windows = _windows(x, geo, 0.0)
    y = windows.sum(axis=(4, 5)) * (1.0 / (geo.kernel[0] * geo.kernel[1]))
    return y.astype(x.dtype, copy=False), AvgPoolCache(geo)


def avg_pool2d_backward(dy: np.ndarray, cache: AvgPoolCache) -> np.ndarray:
    geo = cache.geometry
    kh, kw = geo.kernel
    share = dy * (1.0 / (kh * kw))
    window_grads = np.broadcast_to(share[..., None, None], (*dy.shape, kh, kw))
    return _scatter(window_grads, geo)


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
    if isinstance(cache, MaxPoolCache):
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
