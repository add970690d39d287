"""Faster convolution algorithms for particular shapes, each behind one dispatch function.

``forward``, ``weight_grad`` and ``input_grad`` return None where the general algorithm in
``conv`` is the right one, so ``conv`` reads as the general case and the exceptions live
here. All of them compute exactly what ``conv`` and ``reference`` define, and the tests
force each path and compare.

- One input channel: the im2col matrix is gathered offset-major, copying runs of Wo
  pixels instead of runs of kw.
- Groups: im2col and the GEMMs batched over the groups.
- Small stride-1 batches: the input gradient as the full correlation of dY with the
  flipped kernel, its windows gathered along the width only ("row windows"): one GEMM
  and kh shifted adds instead of kh*kw of each.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .layout import pad_nchw
from .shapes import ConvGeometry
from .windows import col2im, sliding_windows

# Row windows do (Wo + kw - 1)/Wo times the multiply-adds of the per-offset GEMMs but make
# one BLAS call instead of kh*kw. Above this many output pixels (N*Ho*Wo) the per-offset
# GEMMs are large enough to run at full speed and the extra arithmetic loses; the
# measurements in whole training steps are in bench/NOTES.md.
ROW_WINDOW_MAX_ROWS = 1024


def forward(
    xp: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry
) -> tuple[np.ndarray, np.ndarray] | None:
    """(cols, out) for the padded input ``xp``, or None for the general im2col + GEMM."""
    if geo.input_shape[1] == 1:
        cols = _im2col_single_channel(xp, geo)
        return cols, cols[0] @ w_mat[0].T
    if geo.groups > 1:
        return _grouped_forward(xp, w_mat, geo)
    return None


def weight_grad(dy_mat: np.ndarray, cols: np.ndarray, geo: ConvGeometry) -> np.ndarray | None:
    """dW as (G, O/G, K) for grouped convolutions, or None for the general GEMM."""
    if geo.groups == 1:
        return None
    og = geo.weight_shape[0] // geo.groups
    return np.matmul(dy_mat.reshape(geo.rows, geo.groups, og).transpose(1, 2, 0), cols)


def input_grad(
    dy: np.ndarray, dy_mat: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry
) -> np.ndarray | None:
    """The padded input gradient (N, C, Hp, Wp), or None for the general per-offset form."""
    if geo.groups > 1:
        return _grouped_input_grad(dy_mat, w_mat, geo)
    if geo.stride == (1, 1) and geo.rows <= ROW_WINDOW_MAX_ROWS:
        return input_grad_row_windows(dy, w_mat[0], geo)
    return None


def _im2col_single_channel(xp: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """im2col of a one-channel input, gathered offset-major: (1, N*Ho*Wo, kh*kw) as a view.

    The transposed view of the (kh*kw, N*Ho*Wo) copy is still a valid BLAS operand, so
    neither GEMM needs another copy.
    """
    (kh, kw), (out_h, out_w), (sh, sw), (dh, dw) = geo.kernel, geo.out_hw, geo.stride, geo.dilation
    s_n, _, s_h, s_w = xp.strides
    windows = as_strided(
        xp,
        shape=(kh, kw, xp.shape[0], out_h, out_w),
        strides=(s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw),
        writeable=False,
    )
    return windows.reshape(kh * kw, -1).T[None]


def _grouped_forward(
    xp: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """im2col per group, (G, rows, K), and G GEMMs in one batched matmul."""
    n, (out_h, out_w), groups = geo.input_shape[0], geo.out_hw, geo.groups
    (kh, kw), cin_per_group = geo.kernel, geo.weight_shape[1]
    windows = sliding_windows(xp, geo.kernel, geo.out_hw, geo.stride, geo.dilation)
    grouped = windows.reshape(n, out_h, out_w, kh, kw, groups, cin_per_group)
    cols = np.ascontiguousarray(grouped.transpose(5, 0, 1, 2, 3, 4, 6)).reshape(
        groups, geo.rows, -1
    )
    out = np.matmul(cols, w_mat.transpose(0, 2, 1)).transpose(1, 0, 2)  # (rows, G, O/G)
    return cols, np.ascontiguousarray(out).reshape(geo.rows, geo.weight_shape[0])


def _grouped_input_grad(dy_mat: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per-offset GEMMs batched over groups and offsets, then col2im."""
    n, c = geo.input_shape[:2]
    (kh, kw), (out_h, out_w), groups = geo.kernel, geo.out_hw, geo.groups
    og, cin_per_group = w_mat.shape[1], geo.weight_shape[1]
    w_offsets = w_mat.reshape(groups, og, kh * kw, cin_per_group).transpose(0, 2, 1, 3)
    dy_groups = dy_mat.reshape(geo.rows, groups, og).transpose(1, 0, 2)[:, None]
    parts = np.matmul(dy_groups, w_offsets)  # (G, K, rows, C/G)
    parts = parts.transpose(1, 2, 0, 3).reshape(kh, kw, n, out_h, out_w, c)
    return col2im(parts, geo.padded_shape, geo.stride, geo.dilation)


def input_grad_row_windows(dy: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Padded-input gradient of a stride-1 convolution, channels-last, as (N, C, Hp, Wp).

    dx[n, h, w, c] = sum over (i, j, o) of dy[n, h - dh*i, w - dw*j, o] * W[o, c, i, j].
    Along the width this is a correlation with the flipped kernel row: dY padded by
    dw*(kw - 1) on both sides is viewed as width windows (n, ho, w, t, o) reading column
    w + dw*t, so t = kw - 1 - j. One GEMM with the weight arranged as ((t, o), (i, c))
    gives every kernel row's contribution g[n, ho, w, i, c]; row i lands on h = ho + dh*i.
    """
    n, c = geo.input_shape[:2]
    out_channels, _, kh, kw = geo.weight_shape
    _, _, out_h, out_w = dy.shape
    dh, dw = geo.dilation
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
