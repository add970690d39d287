"""2-D convolution (cross-correlation, as in every framework) as strided windows plus BLAS.

Forward is the article's "image patches + tensordot": the padded input is viewed as
windows with ``as_strided`` (no copy), gathered once into an im2col matrix, and multiplied
by the weight matrix in one GEMM per group. The im2col matrix is cached so that the weight
gradient is another single GEMM. The input gradient is the transposed product followed by
col2im, which loops over the kh*kw kernel offsets only; each iteration adds a whole strided
slab, so there is no loop over batch items or output pixels and no ``np.add.at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._shapes import Padding2D, output_size, positive_pair, resolve_padding


class ConvCache(NamedTuple):
    cols: np.ndarray  # (G, N*Ho*Wo, Cg*kh*kw) im2col matrix, reused by the weight gradient
    input_shape: tuple[int, int, int, int]
    weight: np.ndarray
    stride: tuple[int, int]
    padding: Padding2D
    dilation: tuple[int, int]
    groups: int
    has_bias: bool


def pad_nchw(x: np.ndarray, padding: Padding2D, value: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes; returns ``x`` itself when there is nothing to pad."""
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    out = np.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype)
    # Fill only the border: writing the interior twice would double the memory traffic.
    out[:, :, :top] = value
    out[:, :, h + top :] = value
    out[:, :, top : h + top, :left] = value
    out[:, :, top : h + top, w + left :] = value
    out[:, :, top : h + top, left : w + left] = x
    return out


def sliding_windows(
    xp: np.ndarray,
    kernel: tuple[int, int],
    out_hw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Read-only view (N, C, Ho, Wo, kh, kw) of every receptive field of ``xp`` (N, C, H, W).

    Works for any memory layout of ``xp`` because it only composes its strides.
    """
    n, c = xp.shape[:2]
    s_n, s_c, s_h, s_w = xp.strides
    return as_strided(
        xp,
        shape=(n, c, out_hw[0], out_hw[1], kernel[0], kernel[1]),
        strides=(s_n, s_c, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1]),
        writeable=False,
    )


def scatter_windows(
    window_grads: np.ndarray,
    padded_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Adjoint of :func:`sliding_windows` (col2im): sum (N, C, Ho, Wo, kh, kw) into (N, C, H, W).

    Loops over the kh*kw kernel offsets only. For each offset the windows touch a strided
    slab of the input, so one vectorised ``+=`` per offset adds all batch items and all
    output pixels at once; overlapping windows accumulate correctly because the slabs of
    different offsets are added one after another.
    """
    _, _, out_h, out_w, kh, kw = window_grads.shape
    grad = np.zeros(padded_shape, dtype=window_grads.dtype)
    sh, sw = stride
    dh, dw = dilation
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
            grad[:, :, rows, cols] += window_grads[:, :, :, :, i, j]
    return grad


def crop_padding(x: np.ndarray, padding: Padding2D) -> np.ndarray:
    (top, bottom), (left, right) = padding
    h, w = x.shape[2:]
    return x[:, :, top : h - bottom, left : w - right]


def conv2d_output_hw(
    input_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding2D,
    dilation: tuple[int, int],
) -> tuple[int, int]:
    return (
        output_size(input_hw[0], kernel[0], stride[0], padding[0], dilation[0]),
        output_size(input_hw[1], kernel[1], stride[1], padding[1], dilation[1]),
    )


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvCache]:
    """y[n, o] = sum_c sum_(i,j) w[o, c, i, j] * x_pad[n, c, s*y + d*i, s*x + d*j] + b[o].

    Shapes: x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) -> y (N, O, Ho, Wo).
    The result is a view in NCHW order over an NHWC buffer (what the GEMM produces);
    every kernel here accepts such views.
    """
    stride_hw = positive_pair(stride, "stride")
    dilation_hw = positive_pair(dilation, "dilation")
    out_channels, cin_per_group, kh, kw = weight.shape
    pads = resolve_padding(padding, (kh, kw), dilation_hw, stride_hw)
    n, c, h, w = x.shape
    if c != cin_per_group * groups:
        raise ValueError(
            f"input has {c} channels but the weight {weight.shape} with groups={groups} "
            f"expects {cin_per_group * groups}"
        )
    out_h, out_w = conv2d_output_hw((h, w), (kh, kw), stride_hw, pads, dilation_hw)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"kernel {(kh, kw)} with dilation {dilation_hw} does not fit the padded input "
            f"{(h + sum(pads[0]), w + sum(pads[1]))} (input {x.shape}, padding {pads})"
        )

    windows = sliding_windows(pad_nchw(x, pads), (kh, kw), (out_h, out_w), stride_hw, dilation_hw)
    k = cin_per_group * kh * kw
    # (N, Ho, Wo, G, Cg, kh, kw): one contiguous row of K values per output pixel and group.
    cols = windows.reshape(n, groups, cin_per_group, out_h, out_w, kh, kw)
    cols = np.ascontiguousarray(cols.transpose(1, 0, 3, 4, 2, 5, 6)).reshape(
        groups, n * out_h * out_w, k
    )
    w_mat = weight.reshape(groups, out_channels // groups, k)
    if groups == 1:
        out = cols[0] @ w_mat[0].T  # (N*Ho*Wo, O)
    else:
        out = np.matmul(cols, w_mat.transpose(0, 2, 1))  # (G, N*Ho*Wo, O/G)
        out = out.transpose(1, 0, 2).reshape(n * out_h * out_w, out_channels)
    if bias is not None:
        out += bias
    y = out.reshape(n, out_h, out_w, out_channels).transpose(0, 3, 1, 2)
    cache = ConvCache(cols, x.shape, weight, stride_hw, pads, dilation_hw, groups, bias is not None)
    return y, cache


def conv2d_backward(
    dy: np.ndarray, cache: ConvCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients (dx, dweight, dbias) of :func:`conv2d_forward` for upstream ``dy`` (N, O, Ho, Wo).

    dweight = dY^T @ cols and dcols = dY @ W are one GEMM each (per group); dx is col2im of
    dcols. ``need_input_grad=False`` skips the input gradient (the first layer of a network).
    """
    cols, input_shape, weight, stride, pads, dilation, groups, has_bias = cache
    n, c, h, w = input_shape
    out_channels, cin_per_group, kh, kw = weight.shape
    _, _, out_h, out_w = dy.shape
    og = out_channels // groups
    # NHWC rows; free when dy is the NCHW view of an NHWC buffer that our kernels produce.
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(n * out_h * out_w, out_channels)
    dbias = dy_mat.sum(axis=0) if has_bias else None
    if groups == 1:
        dweight = (dy_mat.T @ cols[0]).reshape(weight.shape)
    else:
        dy_groups = dy_mat.reshape(-1, groups, og).transpose(1, 2, 0)  # (G, O/G, NHoWo)
        dweight = np.matmul(dy_groups, cols).reshape(weight.shape)
    if not need_input_grad:
        return None, dweight, dbias

    w_mat = weight.reshape(groups, og, cin_per_group * kh * kw)
    if groups == 1:
        dcols = (dy_mat @ w_mat[0]).reshape(n, out_h, out_w, 1, cin_per_group, kh, kw)
    else:
        dcols = np.matmul(dy_mat.reshape(-1, groups, og).transpose(1, 0, 2), w_mat)
        dcols = dcols.reshape(groups, n, out_h, out_w, cin_per_group, kh, kw).transpose(
            1, 2, 3, 0, 4, 5, 6
        )
    # -> (N, C, Ho, Wo, kh, kw) with C = G*Cg, as a view.
    window_grads = dcols.reshape(n, out_h, out_w, c, kh, kw).transpose(0, 3, 1, 2, 4, 5)
    padded_shape = (n, c, h + sum(pads[0]), w + sum(pads[1]))
    dxp = scatter_windows(window_grads, padded_shape, stride, dilation)
    return crop_padding(dxp, pads), dweight, dbias
