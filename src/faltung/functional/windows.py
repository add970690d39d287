"""Windows of an image as strided views, and their adjoint: the im2col/col2im pair.

A convolution or pooling window at output pixel (y, x) with kernel offset (i, j) reads
input pixel (s*y + d*i, s*x + d*j). Both directions are written here once:
``sliding_windows`` views every window without copying, ``col2im`` adds gradients back
into the pixels they came from.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .layout import zeros_nchw
from .shapes import IntPair, Shape4D


def sliding_windows(
    xp: np.ndarray,
    kernel: IntPair,
    out_hw: IntPair,
    stride: IntPair,
    dilation: IntPair = (1, 1),
) -> np.ndarray:
    """Read-only view (N, Ho, Wo, kh, kw, C) of every receptive field of ``xp`` (N, C, H, W).

    Composes the strides of ``xp``, so any memory layout works; channels-last memory makes
    the last axis contiguous, which is what the im2col copy wants.
    """
    n, c = xp.shape[:2]
    s_n, s_c, s_h, s_w = xp.strides
    return as_strided(
        xp,
        shape=(n, out_hw[0], out_hw[1], kernel[0], kernel[1], c),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1], s_c),
        writeable=False,
    )


def offset_view(
    x: np.ndarray, i: int, j: int, out_hw: IntPair, stride: IntPair, dilation: IntPair = (1, 1)
) -> np.ndarray:
    """The (N, C, Ho, Wo) strided slab of ``x`` that kernel offset (i, j) reads (a view)."""
    top, left = i * dilation[0], j * dilation[1]
    return x[
        :,
        :,
        top : top + stride[0] * (out_hw[0] - 1) + 1 : stride[0],
        left : left + stride[1] * (out_hw[1] - 1) + 1 : stride[1],
    ]


def col2im(
    parts: np.ndarray,
    padded_shape: Shape4D,
    stride: IntPair,
    dilation: IntPair,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Adjoint of the window view: sum (kh, kw, N, Ho, Wo, C) into (N, C, H, W), channels-last.

    Loops over the kh*kw kernel offsets only; each offset's windows touch one strided slab
    of the input, added in one vectorised operation. Overlapping windows accumulate because
    the slabs of different offsets are added one after another. ``out``, if given, is a
    channels-last (N, C, H, W) array the sums are added into (a zeroed one by default).
    """
    kh, kw, _, out_h, out_w, _ = parts.shape
    if out is None:
        out = zeros_nchw(padded_shape, parts.dtype)
    grad = out.transpose(0, 2, 3, 1)  # NHWC view
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
            grad[:, rows, cols, :] += parts[i, j]
    return grad.transpose(0, 3, 1, 2)
