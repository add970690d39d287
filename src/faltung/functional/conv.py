"""2-D convolution (cross-correlation, as in every framework): the fast kernels.

    y[n, o, h, w] = b[o] + sum over (c, i, j) of W[o, c, i, j] * x_pad[n, c, s*h + d*i, s*w + d*j]

The same formula written plainly, the article's "patches + tensordot", is
:func:`faltung.functional.reference.conv2d_forward`; these kernels compute the same
numbers faster and are tested against it. The general algorithm is three products:

- forward: gather every receptive field into one matrix (im2col: a row per output pixel,
  a column per (i, j, c)), then ``y = cols @ W^T``, one GEMM;
- weight gradient: ``dW = dY^T @ cols``, with the matrix kept from the forward pass;
- input gradient: ``dcols = dY @ W``, and col2im adds each window's gradient back into
  the pixels it was read from.

Activations are channels-last in memory behind NCHW views (see ``layout``), so the GEMM's
(N*Ho*Wo, O) result is the next layer's input without a transpose. Shapes for which
another algorithm is faster (5x5 kernels by Winograd's, one input channel, groups,
stride-1 input gradients, large batches in chunks) are handled in ``conv_fast``, which
each step below asks once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from . import conv_fast, winograd
from .layout import crop_padding, pad_nchw
from .shapes import ConvGeometry, Padding2D, conv_geometry
from .windows import col2im, sliding_windows


class ConvCache(NamedTuple):
    # (G, N*Ho*Wo, kh*kw*C/G): the im2col matrix, reused for dW; or, for a convolution
    # Winograd's algorithm computes (conv_fast), its transformed tiles.
    cols: np.ndarray | winograd.Tiles | None
    # A large batch runs in chunks and keeps the input (N, C, H, W) instead, from which
    # conv_fast pads and gathers each chunk's matrix again; x is None when cols is kept.
    x: np.ndarray | None
    w_mat: np.ndarray  # (G, O/G, kh*kw*C/G): the weight in the im2col column order
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
    """x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) -> y (N, O, Ho, Wo).

    ``y`` is an NCHW view of a channels-last buffer. ``need_cache=False`` (inference)
    returns no cache, which lets any batch run in cache-sized chunks. Whether a training
    batch runs in chunks (and its cache keeps ``x`` rather than the im2col matrix) depends
    on the calling thread's BLAS threads too (``conv_fast.images_per_chunk``).
    """
    geo = conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups)
    w_mat = weight_matrix(weight, groups)
    special = conv_fast.forward(x, w_mat, geo, need_cache)
    if special is None:
        cols = im2col(pad_nchw(x, geo.padding), geo)
        out = cols[0] @ w_mat[0].T  # (N*Ho*Wo, O): the NHWC output buffer
    else:
        cols, out = special
    if bias is not None:
        add_bias_rows(out, bias, geo.out_hw[1])
    n, (out_h, out_w) = geo.input_shape[0], geo.out_hw
    y = out.reshape(n, out_h, out_w, weight.shape[0]).transpose(0, 3, 1, 2)
    if not need_cache:
        return y, None
    return y, ConvCache(cols, None if cols is not None else x, w_mat, geo, bias is not None)


def conv2d_backward(
    dy: np.ndarray, cache: ConvCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(dx, dweight, dbias) for upstream ``dy`` (N, O, Ho, Wo); dx is None when not needed.

    ``need_input_grad=False`` skips the input gradient (the first layer of a network).
    """
    cols, x, w_mat, geo, has_bias = cache
    # Free when dy is channels-last in memory, as every gradient our kernels produce is.
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(geo.rows, geo.weight_shape[0])
    # Column sums as a GEMV: much faster than sum(axis=0) over short rows.
    dbias = np.ones(geo.rows, dy_mat.dtype) @ dy_mat if has_bias else None
    special = conv_fast.backward(dy, dy_mat, x, cols, w_mat, geo, need_input_grad)
    if special is not None:
        dw_mat, dx = special
    else:
        dw_mat = conv_fast.weight_grad_matrix(dy_mat, cols[0])[None]  # dY^T cols
        dx = None
        if need_input_grad:
            dx = crop_padding(input_grad_per_offset(dy_mat, w_mat[0], geo), geo.padding)
    return dx, weight_from_matrix(dw_mat, geo.weight_shape), dbias


def im2col(xp: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """(1, N*Ho*Wo, kh*kw*C): each receptive field of the padded input as one row.

    The window view costs nothing; this reshape is the forward pass's one copy, and with
    channels-last memory it copies contiguous runs of C values.
    """
    windows = sliding_windows(xp, geo.kernel, geo.out_hw, geo.stride, geo.dilation)
    return windows.reshape(1, geo.rows, -1)


def input_grad_per_offset(dy_mat: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Padded dx (N, C, Hp, Wp) as col2im of dcols = dY @ W, one GEMM per kernel offset.

    ``parts[k] = dY @ W_k`` is the (N*Ho*Wo, C) gradient kernel offset k sends back; all
    kh*kw products run as one batched matmul, and col2im adds contiguous rows.
    """
    n, c = geo.input_shape[:2]
    (kh, kw), (out_h, out_w) = geo.kernel, geo.out_hw
    w_offsets = w_mat.reshape(-1, kh * kw, c).transpose(1, 0, 2)  # (K, O, C)
    parts = np.matmul(dy_mat, w_offsets)  # (K, N*Ho*Wo, C)
    return col2im(
        parts.reshape(kh, kw, n, out_h, out_w, c), geo.padded_shape, geo.stride, geo.dilation
    )


def weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """(O, C/G, kh, kw) -> (G, O/G, kh*kw*C/G), columns in the im2col (i, j, c) order."""
    out_channels = weight.shape[0]
    return weight.transpose(0, 2, 3, 1).reshape(groups, out_channels // groups, -1)


def weight_from_matrix(w_mat: np.ndarray, weight_shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`weight_matrix`: a contiguous (O, C/G, kh, kw) array."""
    out_channels, cin_per_group, kh, kw = weight_shape
    return np.ascontiguousarray(
        w_mat.reshape(out_channels, kh, kw, cin_per_group).transpose(0, 3, 1, 2)
    )


def add_bias_rows(out: np.ndarray, bias: np.ndarray, row_length: int) -> None:
    """out (rows, O) += bias, in place, for a C-contiguous ``out``.

    Broadcasting over rows of O values gives NumPy short inner loops; viewing
    ``row_length`` rows as one (with the bias tiled as often) gives it long ones.
    """
    if not out.flags.c_contiguous:
        raise ValueError("add_bias_rows needs a C-contiguous output")
    wide = out.reshape(-1, row_length * out.shape[1])  # a view: out is contiguous
    wide += np.tile(bias.astype(out.dtype, copy=False), row_length)
