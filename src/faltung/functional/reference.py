"""The article's way: every kernel written plainly, forward and backward.

This is where to read how a CNN computes. Convolution is "image patches + tensordot":
cut out the patch under every output pixel, then contract it with the filters. Pooling
reduces each patch. Nothing here is tuned for speed: no memory-layout tricks, no BLAS
orientation games, a loop over kernel offsets where it reads best.

The fast kernels in the other modules of ``faltung.functional`` compute the same numbers;
the tests check them against these, forward and backward, on random shapes. Any model
can run on these kernels instead: ``Sequential(layers, kernels="reference")``.

The contract is the fast kernels' one: ``op_forward(...) -> (y, cache)`` and
``op_backward(dy, cache) -> dx`` or ``(dx, *parameter_gradients)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

# Kernels that are already one plain formula each are shared with the fast path.
from .activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .dropout import dropout_backward, dropout_forward
from .losses import mse_backward, mse_forward
from .norm import (
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_inference_backward,
    batch_norm_inference_forward,
)
from .pool import global_avg_pool2d_backward, global_avg_pool2d_forward
from .shapes import (
    ConvGeometry,
    IntPair,
    Padding2D,
    PoolGeometry,
    check_features,
    conv_geometry,
    pool_geometry,
)

PoolSize = int | Sequence[int]

# --- image patches and their adjoint -------------------------------------------------


def patches(
    xp: np.ndarray, kernel: IntPair, out_hw: IntPair, stride: IntPair, dilation: IntPair
) -> np.ndarray:
    """P[n, c, i, j, y, x] = xp[n, c, s*y + d*i, s*x + d*j]: the patch under each output pixel.

    One slice per kernel offset (i, j): its (N, C, Ho, Wo) pixels, read with the stride.
    """
    n, c = xp.shape[:2]
    (kh, kw), (out_h, out_w) = kernel, out_hw
    (sh, sw), (dh, dw) = stride, dilation
    p = np.empty((n, c, kh, kw, out_h, out_w), xp.dtype)
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * out_h, sh)
        for j in range(kw):
            p[:, :, i, j] = xp[:, :, rows, j * dw : j * dw + sw * out_w : sw]
    return p


def col2im(
    dp: np.ndarray, padded_shape: Sequence[int], stride: IntPair, dilation: IntPair
) -> np.ndarray:
    """The adjoint of :func:`patches`: each patch entry's gradient goes back to its pixel.

    Patches overlap when the stride is smaller than the kernel, so a pixel collects the
    sum of the gradients of every patch that contains it.
    """
    _, _, kh, kw, out_h, out_w = dp.shape
    (sh, sw), (dh, dw) = stride, dilation
    dxp = np.zeros(padded_shape, dp.dtype)
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * out_h, sh)
        for j in range(kw):
            dxp[:, :, rows, j * dw : j * dw + sw * out_w : sw] += dp[:, :, i, j]
    return dxp


def pad(x: np.ndarray, padding: Padding2D, value: float = 0.0) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), *padding), constant_values=value)


def crop(xp: np.ndarray, padding: Padding2D) -> np.ndarray:
    (top, bottom), (left, right) = padding
    return xp[:, :, top : xp.shape[2] - bottom, left : xp.shape[3] - right]


# --- convolution ---------------------------------------------------------------------


class ConvCache(NamedTuple):
    patches: np.ndarray  # (N, C, kh, kw, Ho, Wo)
    weight: np.ndarray  # (O, C/groups, kh, kw)
    geometry: ConvGeometry
    has_bias: bool


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str | Padding2D = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    need_cache: bool = True,
) -> tuple[np.ndarray, ConvCache | None]:
    """y[n, o, y, x] = b[o] + sum over (c, i, j) of W[o, c, i, j] * P[n, c, i, j, y, x].

    The sum over (c, i, j) is one ``np.tensordot`` of the patches with the filters; with
    groups, output channel group g sees only input channel group g. With
    ``need_cache=False`` (inference) the cache is None.
    """
    geo = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    p = patches(pad(x, geo.padding), geo.kernel, geo.out_hw, geo.stride, geo.dilation)
    parts = []
    for p_g, w_g in zip(np.split(p, groups, axis=1), np.split(weight, groups, axis=0)):
        parts.append(np.tensordot(p_g, w_g, axes=([1, 2, 3], [1, 2, 3])))  # (N, Ho, Wo, O/G)
    y = np.concatenate(parts, axis=3).transpose(0, 3, 1, 2)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y, ConvCache(p, weight, geo, bias is not None) if need_cache else None


def conv2d_backward(
    dy: np.ndarray, cache: ConvCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """dW[o, c, i, j] = sum over (n, y, x) of dy[n, o, y, x] * P[n, c, i, j, y, x];
    dP[n, c, i, j, y, x] = sum over o of W[o, c, i, j] * dy[n, o, y, x], and dx = col2im(dP).
    """
    p, weight, geo, has_bias = cache
    groups = geo.groups
    dweights, dpatches = [], []
    for p_g, w_g, dy_g in zip(
        np.split(p, groups, axis=1), np.split(weight, groups), np.split(dy, groups, axis=1)
    ):
        dweights.append(np.tensordot(dy_g, p_g, axes=([0, 2, 3], [0, 4, 5])))
        dpatches.append(np.tensordot(w_g, dy_g, axes=([0], [1])).transpose(3, 0, 1, 2, 4, 5))
    dweight = np.concatenate(dweights, axis=0)
    dbias = dy.sum(axis=(0, 2, 3)) if has_bias else None
    if not need_input_grad:
        return None, dweight, dbias
    dxp = col2im(np.concatenate(dpatches, axis=1), geo.padded_shape, geo.stride, geo.dilation)
    return crop(dxp, geo.padding), dweight, dbias


# --- pooling: the article's Lp formula and its two limits -----------------------------


def _pool_patches(x: np.ndarray, geo: PoolGeometry, pad_value: float) -> np.ndarray:
    """(N, C, kh*kw, Ho, Wo): each window's values along axis 2."""
    p = patches(pad(x, geo.padding, pad_value), geo.kernel, geo.out_hw, geo.stride, (1, 1))
    n, c, kh, kw, out_h, out_w = p.shape
    return p.reshape(n, c, kh * kw, out_h, out_w)


def _unpool(dp: np.ndarray, geo: PoolGeometry) -> np.ndarray:
    """col2im of (N, C, kh*kw, Ho, Wo) window gradients, cropped to the input."""
    n, c, _, out_h, out_w = dp.shape
    dp = dp.reshape(n, c, *geo.kernel, out_h, out_w)
    return crop(col2im(dp, geo.padded_shape, geo.stride, (1, 1)), geo.padding)


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: PoolSize,
    stride: PoolSize | None = None,
    padding: PoolSize = 0,
    *,
    need_cache: bool = True,
) -> tuple[np.ndarray, tuple[np.ndarray, PoolGeometry] | None]:
    """u = max over the window (P = inf). Padding is -inf; ties go to the first maximum.

    Cache: (winner (N, C, 1, Ho, Wo), the index of each window's maximum; geometry).
    With ``need_cache=False`` (inference) the cache is None.
    """
    geo = pool_geometry(x.shape, kernel_size, stride, padding)
    windows = _pool_patches(x, geo, -np.inf)
    winner = windows.argmax(axis=2)[:, :, None]  # (N, C, 1, Ho, Wo)
    y = np.take_along_axis(windows, winner, axis=2)[:, :, 0]
    return y, (winner, geo) if need_cache else None


def max_pool2d_backward(dy: np.ndarray, cache: tuple[np.ndarray, PoolGeometry]) -> np.ndarray:
    """The whole gradient of a window goes to the value that won it."""
    winner, geo = cache
    dp = np.zeros((*dy.shape[:2], geo.kernel[0] * geo.kernel[1], *dy.shape[2:]), dy.dtype)
    np.put_along_axis(dp, winner, dy[:, :, None], axis=2)
    return _unpool(dp, geo)


def avg_pool2d_forward(
    x: np.ndarray, kernel_size: PoolSize, stride: PoolSize | None = None, padding: PoolSize = 0
) -> tuple[np.ndarray, PoolGeometry]:
    """u = (1/H^2) * sum over the window (P = 1). Zero padding counts, as in PyTorch.

    Cache: the geometry alone; the gradient does not depend on the values.
    """
    geo = pool_geometry(x.shape, kernel_size, stride, padding)
    return _pool_patches(x, geo, 0.0).mean(axis=2), geo


def avg_pool2d_backward(dy: np.ndarray, cache: PoolGeometry) -> np.ndarray:
    """Each value of a window gets 1/H^2 of the window's gradient."""
    geo = cache
    k = geo.kernel[0] * geo.kernel[1]
    return _unpool(np.repeat(dy[:, :, None] / k, k, axis=2), geo)


def lp_pool2d_forward(
    x: np.ndarray,
    p: float,
    kernel_size: PoolSize,
    stride: PoolSize | None = None,
    padding: PoolSize = 0,
) -> tuple[np.ndarray, Any]:
    """The article's pooling: u = ((1/H^2) * sum over the window of z^P)^(1/P).

    P = 1 is average pooling and P = inf is max pooling. Integer P uses z^P (an odd P
    keeps the sign, and so does the root); other P use |z|^P.

    Cache: (z (N, C, kh*kw, Ho, Wo) the windows, m and u (N, C, Ho, Wo) the mean power and
    the output, P, geometry).
    """
    if math.isinf(p):
        return max_pool2d_forward(x, kernel_size, stride, padding)
    if p == 1:
        return avg_pool2d_forward(x, kernel_size, stride, padding)
    geo = pool_geometry(x.shape, kernel_size, stride, padding)
    z = _pool_patches(x, geo, 0.0)
    m = (z**p if float(p).is_integer() else np.abs(z) ** p).mean(axis=2)
    u = np.sign(m) * np.abs(m) ** (1 / p)
    return u, (z, m, u, p, geo)


def lp_pool2d_backward(dy: np.ndarray, cache: Any) -> np.ndarray:
    """du/dz = (1/H^2) * z^(P-1) * u / m for each value z of a window (0 where m = 0)."""
    if isinstance(cache, PoolGeometry):
        return avg_pool2d_backward(dy, cache)
    if len(cache) == 2:
        return max_pool2d_backward(dy, cache)
    z, m, u, p, geo = cache
    k = z.shape[2]
    ratio = np.divide(u, m, out=np.zeros_like(u), where=m != 0)
    z_pow = z ** (p - 1) if float(p).is_integer() else np.sign(z) * np.abs(z) ** (p - 1)
    return _unpool((dy * ratio)[:, :, None] * z_pow / k, geo)


# --- the fully connected part: dense layers, sigmoid, ReLU, softmax + cross-entropy ---


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, bool]]:
    """y = x W^T + b, for x (N, in) and W (out, in). Cache: (x, W, whether there is a b)."""
    check_features(x.shape, weight.shape[1])
    y = x @ weight.T
    return (y if bias is None else y + bias), (x, weight, bias is not None)


def linear_backward(
    dy: np.ndarray, cache: tuple[np.ndarray, np.ndarray, bool], need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """dx = dy W, dW = dy^T x, db = sum of dy over the batch."""
    x, weight, has_bias = cache
    dx = dy @ weight if need_input_grad else None
    return dx, dy.T @ x, (dy.sum(axis=0) if has_bias else None)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = 1 / (1 + e^-x). Cache: y.

    e^-x may overflow to inf for very negative x; y is then exactly 0, as it should be.
    """
    with np.errstate(over="ignore"):
        y = 1 / (1 + np.exp(-x))
    return y, y


def sigmoid_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dy/dx = y (1 - y)."""
    y = cache
    return dy * y * (1 - y)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = max(x, 0). Cache: x."""
    return np.maximum(x, 0), x


def relu_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dy/dx = 1 where x > 0, else 0."""
    x = cache
    return dy * (x > 0)


def softmax_cross_entropy_forward(
    logits: np.ndarray, targets: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """p = softmax(z) = e^z / sum e^z, loss = -(1/N) sum over n, k of t[n, k] log p[n, k].

    log p is computed as z - max(z) - log(sum e^(z - max(z))): the same number, without
    overflow in e^z or log(0) for a tiny probability. A term with t = 0 is 0, also where
    log p is -inf (a logit of -inf).

    Cache: (p, t), both (N, K).
    """
    n, k = logits.shape
    t = np.eye(k, dtype=logits.dtype)[targets] if targets.ndim == 1 else targets
    t = t.astype(logits.dtype, copy=False)
    if label_smoothing:
        t = t * (1 - label_smoothing) + label_smoothing / k
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    terms = t * np.where(t != 0, log_p, 0)  # 0 log 0 = 0
    return -float(np.sum(terms)) / n, (np.exp(log_p), t)


def softmax_cross_entropy_backward(
    dloss: float, cache: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """dloss/dz = (p - t) / N: softmax and cross-entropy differentiate together to this."""
    p, t = cache
    return (p - t) * (dloss / len(p))


__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_inference_backward",
    "batch_norm_inference_forward",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "dropout_backward",
    "dropout_forward",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "linear_backward",
    "linear_forward",
    "lp_pool2d_backward",
    "lp_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mse_backward",
    "mse_forward",
    "patches",
    "relu_backward",
    "relu_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_backward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "softmax_forward",
    "tanh_backward",
    "tanh_forward",
]
