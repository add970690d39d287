"""2-D convolution (cross-correlation, as in every framework) as strided windows plus BLAS.

Forward is the article's "image patches + tensordot": the padded input, channels-last in
memory, is viewed as windows (N, Ho, Wo, kh, kw, C) with ``as_strided`` (no copy),
gathered once into an im2col matrix whose rows are contiguous runs of channels, and
multiplied by the weight matrix in one GEMM per group. The GEMM's (N*Ho*Wo, O) result is
the NHWC output buffer itself, returned as an NCHW view: no transpose anywhere.

Backward: the weight gradient is one GEMM with the cached im2col matrix. The input gradient
has two vectorised forms (no loop over batch items or pixels, no ``np.add.at``):

- per kernel offset: kh*kw GEMMs dY @ W_k, then col2im adds each offset's strided slab.
  The general form (any stride, groups), and the fastest for large batches.
- row windows, for stride 1 without groups: dx is the full correlation of dY with the
  flipped kernel. Its windows are gathered along the width only (kw*O contiguous values
  each, like the forward's im2col), one GEMM covers all kernel columns and kernel rows
  at once, and kh shifted adds finish the height. It does (Wo + kw - 1)/Wo times the
  multiply-adds but one BLAS call instead of kh*kw and kh adds instead of kh*kw, which
  wins when batches are small (the article's batch of 5: 0.70 -> 0.45 ms for conv2's dx).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._shapes import Padding2D, output_size, positive_pair, resolve_padding
from .layout import crop_padding, pad_nchw, zeros_nchw


class ConvCache(NamedTuple):
    cols: np.ndarray  # (G, N*Ho*Wo, kh*kw*Cg) im2col matrix, reused by the weight gradient
    w_mat: np.ndarray  # (G, O/G, kh*kw*Cg) weight in the im2col column order
    input_shape: tuple[int, int, int, int]
    weight_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: Padding2D
    dilation: tuple[int, int]
    has_bias: bool


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


def sliding_windows(
    xp: np.ndarray,
    kernel: tuple[int, int],
    out_hw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
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


def _im2col_single_channel(
    xp: np.ndarray,
    kernel: tuple[int, int],
    out_hw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """im2col of a one-channel input, gathered offset-major: (1, N*Ho*Wo, kh*kw) as a view.

    With one channel, the row-major gather copies runs of only kw pixels; gathering each
    kernel offset's whole (N, Ho, Wo) slab copies runs of Wo pixels instead and is faster.
    The transposed view is still a valid BLAS operand, so the GEMMs need no copy.
    """
    n = xp.shape[0]
    s_n, _, s_h, s_w = xp.strides
    windows = as_strided(
        xp,
        shape=(kernel[0], kernel[1], n, out_hw[0], out_hw[1]),
        strides=(s_h * dilation[0], s_w * dilation[1], s_n, s_h * stride[0], s_w * stride[1]),
        writeable=False,
    )
    return windows.reshape(kernel[0] * kernel[1], -1).T[None]


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

    Shapes: x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) -> y (N, O, Ho, Wo),
    returned as a view of a channels-last buffer.
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
    xp = pad_nchw(x, pads)
    rows, k = n * out_h * out_w, kh * kw * cin_per_group
    og = out_channels // groups
    # Weight columns in the same (kh, kw, Cg) order as the im2col rows.
    w_mat = weight.transpose(0, 2, 3, 1).reshape(groups, og, k)
    if c == 1:
        cols = _im2col_single_channel(xp, (kh, kw), (out_h, out_w), stride_hw, dilation_hw)
        out = cols[0] @ w_mat[0].T
    elif groups == 1:
        windows = sliding_windows(xp, (kh, kw), (out_h, out_w), stride_hw, dilation_hw)
        cols = windows.reshape(1, rows, k)  # the one copy of the forward pass
        out = cols[0] @ w_mat[0].T
    else:
        windows = sliding_windows(xp, (kh, kw), (out_h, out_w), stride_hw, dilation_hw)
        grouped = windows.reshape(n, out_h, out_w, kh, kw, groups, cin_per_group)
        cols = np.ascontiguousarray(grouped.transpose(5, 0, 1, 2, 3, 4, 6)).reshape(groups, rows, k)
        out = np.matmul(cols, w_mat.transpose(0, 2, 1)).transpose(1, 0, 2)
        out = np.ascontiguousarray(out).reshape(rows, out_channels)
    if bias is not None:
        add_bias_rows(out, bias, out_w)
    y = out.reshape(n, out_h, out_w, out_channels).transpose(0, 3, 1, 2)
    cache = ConvCache(
        cols, w_mat, x.shape, weight.shape, stride_hw, pads, dilation_hw, bias is not None
    )
    return y, cache


def add_bias_rows(out: np.ndarray, bias: np.ndarray, row_length: int) -> None:
    """out (rows, O) += bias, in place, for a C-contiguous ``out``.

    Broadcasting over rows of O values is slow for small O; viewing ``row_length`` rows
    as one (with the bias tiled as often) gives NumPy long inner loops.
    """
    if not out.flags.c_contiguous:
        raise ValueError("add_bias_rows needs a C-contiguous output")
    wide = out.reshape(-1, row_length * out.shape[1])  # a view: out is contiguous
    wide += np.tile(bias.astype(out.dtype, copy=False), row_length)


def conv2d_backward(
    dy: np.ndarray, cache: ConvCache, need_input_grad: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients (dx, dweight, dbias) of :func:`conv2d_forward` for upstream ``dy`` (N, O, Ho, Wo).

    dW = dY^T @ cols and dcols = dY @ W are one GEMM each (per group); dx is col2im of
    dcols. ``need_input_grad=False`` skips the input gradient (the first layer of a network).
    """
    cols, w_mat, input_shape, weight_shape, stride, pads, dilation, has_bias = cache
    n, c, h, w = input_shape
    out_channels, cin_per_group, kh, kw = weight_shape
    groups, og, _ = w_mat.shape
    _, _, out_h, out_w = dy.shape
    rows = n * out_h * out_w
    # Free when dy is channels-last in memory, as every gradient our kernels produce is.
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(rows, out_channels)
    # Column sums as a GEMV: several times faster than sum(axis=0) over short rows.
    dbias = np.ones(rows, dy_mat.dtype) @ dy_mat if has_bias else None
    if groups == 1:
        # (cols^T dY)^T rather than dY^T cols: the same product, in the orientation
        # OpenBLAS runs faster for tall-skinny operands.
        dw_mat = (cols[0].T @ dy_mat).T[None]
    else:
        dw_mat = np.matmul(dy_mat.reshape(rows, groups, og).transpose(1, 2, 0), cols)
    dweight = np.ascontiguousarray(
        dw_mat.reshape(out_channels, kh, kw, cin_per_group).transpose(0, 3, 1, 2)
    )
    if not need_input_grad:
        return None, dweight, dbias

    if groups == 1 and stride == (1, 1) and rows <= ROW_WINDOW_MAX_ROWS:
        dxp = _input_grad_row_windows(dy, w_mat[0], input_shape, weight_shape, dilation)
        return crop_padding(dxp, pads), dweight, dbias

    # One GEMM per kernel offset, batched: parts[k] = dY @ W_k is the (N*Ho*Wo, C) gradient
    # that offset k sends back, contiguous, so col2im adds long contiguous rows.
    k_offsets = kh * kw
    w_offsets = w_mat.reshape(groups, og, k_offsets, cin_per_group)
    if groups == 1:
        parts = np.matmul(dy_mat, w_offsets[0].transpose(1, 0, 2))  # (K, rows, C)
    else:
        dy_groups = dy_mat.reshape(rows, groups, og).transpose(1, 0, 2)[:, None]
        parts = np.matmul(dy_groups, w_offsets.transpose(0, 2, 1, 3))  # (G, K, rows, Cg)
        parts = parts.transpose(1, 2, 0, 3).reshape(k_offsets, rows, c)
    padded = (n, c, h + sum(pads[0]), w + sum(pads[1]))
    dxp = col2im(parts.reshape(kh, kw, n, out_h, out_w, c), padded, stride, dilation)
    return crop_padding(dxp, pads), dweight, dbias


# Up to this many output pixels (N*Ho*Wo) the row-window input gradient is used. Measured
# on whole LeNet training steps here (conv2: 8x8 outputs, 5x5 kernel): 7% faster steps at
# batch 5 (320 rows), even at batch 16 and 32, 6-8% slower at batch 64 and 256, where the
# per-offset GEMMs are large enough to run at speed and the extra multiply-adds dominate.
ROW_WINDOW_MAX_ROWS = 1024


def _input_grad_row_windows(
    dy: np.ndarray,
    w_mat: np.ndarray,
    input_shape: tuple[int, int, int, int],
    weight_shape: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """Padded-input gradient of a stride-1 convolution, channels-last, as (N, C, Hp, Wp).

    dx[n, h, w, c] = sum over (i, j, o) of dy[n, h - dh*i, w - dw*j, o] * W[o, c, i, j].
    Along the width this is a correlation with the flipped kernel row: dY padded by
    dw*(kw - 1) on both sides is viewed as width windows (n, ho, w, t, o) reading column
    w + dw*t, so t = kw - 1 - j. One GEMM with the weight arranged as ((t, o), (i, c))
    gives every kernel row's contribution g[n, ho, w, i, c]; row i lands on h = ho + dh*i.
    """
    n, c = input_shape[:2]
    out_channels, _, kh, kw = weight_shape
    _, _, out_h, out_w = dy.shape
    dh, dw = dilation
    padded_h, padded_w = out_h + dh * (kh - 1), out_w + dw * (kw - 1)
    margin = dw * (kw - 1)
    dy_padded = pad_nchw(dy, ((0, 0), (margin, margin))).transpose(0, 2, 3, 1)  # NHWC view
    s_n, s_h, s_w, s_o = dy_padded.strides
    windows = as_strided(
        dy_padded,
        shape=(n, out_h, padded_w, kw, out_channels),
        strides=(s_n, s_h, s_w, s_w * dw, s_o),
        writeable=False,
    )
    rows = windows.reshape(n * out_h * padded_w, kw * out_channels)
    # w_mat is (O, (i, j, c)); flip j and order as ((t, o), (i, c)).
    w_rows = w_mat.reshape(out_channels, kh, kw, c)[:, :, ::-1, :].transpose(2, 0, 1, 3)
    g = (rows @ w_rows.reshape(kw * out_channels, kh * c)).reshape(n, out_h, padded_w, kh, c)
    grad = np.zeros((n, padded_h, padded_w, c), dy.dtype)
    for i in range(kh):
        grad[:, i * dh : i * dh + out_h] += g[:, :, :, i]
    return grad.transpose(0, 3, 1, 2)


def col2im(
    parts: np.ndarray,
    padded_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> np.ndarray:
    """Adjoint of the window view: sum (kh, kw, N, Ho, Wo, C) into (N, C, H, W), channels-last.

    Loops over the kh*kw kernel offsets only; each offset's windows touch one strided slab
    of the input, added in one vectorised operation. Overlapping windows accumulate because
    the slabs of different offsets are added one after another.
    """
    kh, kw, _, out_h, out_w, _ = parts.shape
    grad = zeros_nchw(padded_shape, parts.dtype).transpose(0, 2, 3, 1)  # NHWC view
    sh, sw = stride
    dh, dw = dilation
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
            grad[:, rows, cols, :] += parts[i, j]
    return grad.transpose(0, 3, 1, 2)
