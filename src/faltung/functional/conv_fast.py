"""Faster convolution algorithms for particular shapes, each behind one dispatch function.

``forward`` and ``backward`` return None where the general algorithm in ``conv`` is the
right one, so ``conv`` reads as the general case and the exceptions live here. All of
them compute what ``conv`` and ``reference`` define (Winograd's with about ten times
im2col's float32 rounding), and the tests force each path and compare.

- 5 x 5 kernels of stride 1 over 8 channels or more: Winograd's F(4 x 4, 5 x 5), 6.25
  times fewer multiply-adds than im2col, forward and backward (``winograd``).
- One input channel: the im2col matrix is gathered offset-major, copying runs of Wo
  pixels instead of runs of kw.
- Groups: im2col and the GEMMs batched over the groups.
- Small stride-1 batches: the input gradient as the full correlation of dY with the
  flipped kernel, its windows gathered along the width only ("row windows"): one GEMM
  and kh shifted adds instead of kh*kw of each.
- Stride-1 convolutions whose padding keeps the input's size ("same", as in a ResNet):
  the input gradient as a convolution of dY, padded, with the flipped kernel: a gather and
  one GEMM of the forward pass's size, instead of kh*kw narrow GEMMs and a col2im.
- Size-keeping stride-1 convolutions over few channels, when chunked (below): "row
  windows" forward, each output pixel's window gathered along the width only (kw*C
  values instead of kh*kw*C), one GEMM per kernel row (in one batched call), and kh
  shifted adds over whole image rows.
- Large batches, and every batch in inference: the batch in chunks whose im2col matrix
  fits in the cache (sizes per BLAS thread of the caller: smaller inside a shard of a
  batch split over threads). Each chunk's matrix is gathered into one reused buffer and
  multiplied while it is still in cache, and the backward pass gathers it again instead
  of keeping the whole matrix: a copy from cache costs less than writing the matrix out
  to memory and reading it back, and the matrix (33 MB for LeNet's second convolution at
  batch 256) is never held.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._threads import blas_threads
from . import winograd
from .layout import PaddedChunks, crop_padding, pad_nchw, zeros_nchw
from .shapes import ConvGeometry, conv_geometry
from .windows import col2im, sliding_windows

# Row windows do (Wo + kw - 1)/Wo times the multiply-adds of the per-offset GEMMs but make
# one BLAS call instead of kh*kw. Above this many output pixels (N*Ho*Wo) the per-offset
# GEMMs are large enough to run at full speed and the extra arithmetic loses; the
# measurements in whole training steps are in bench/NOTES.md.
ROW_WINDOW_MAX_ROWS = 1024

# A batch whose im2col matrix is larger than CHUNK_ABOVE runs in chunks of CHUNK_BYTES: a
# matrix that spills out of the cache is read back by its GEMM from memory (LeNet's second
# convolution: 33 MB at batch 256), a chunk is read back from cache. Below the threshold
# the whole matrix stays in cache, and keeping it for backward costs less than gathering
# it twice. Both sizes are per BLAS thread, since each thread of a product works on its
# own rows from its own core's 1 MiB L2: a shard of a split batch (``faltung.parallel``),
# whose products run on one thread, chunks at half the sizes that two BLAS threads do.
# They were measured on one and two threads only, so products on more threads use the
# two-thread sizes (bench/NOTES.md, rounds two and seven).
CHUNK_ABOVE = 8 << 20
CHUNK_BYTES = 1 << 20
MEASURED_THREADS = 2
# A one-channel matrix is gathered from images kh*kw times smaller than itself, so
# gathering it again in backward costs little, and its product (K = kh*kw) is bound by
# memory: on one BLAS thread, keeping more than about twice the core's L2 costs more than
# the second gather (LeNet's conv1: 1.8 MB kept as fast as chunked, 3.7 MB chunked
# faster). On two threads the product halves and the gathers do not, and keeping the
# matrix won at every size.
CHUNK_ABOVE_ONE_CHANNEL = 2 << 20

# Row windows trade a gather kh times smaller for (Ho + dh*(kh - 1))/Ho times the
# multiply-adds. That pays in the forward pass of a size-keeping convolution whose window
# rows (kw*C values) are short, as in ResNet's 16- and 32-channel 3x3 stages; with 128
# channels at 7x7 (9/7 the work) or in LeNet's valid 5x5 conv2 (12/8) im2col wins. Each
# chunk's rows and products fill about ROW_WINDOW_CHUNK_BYTES. Measured: bench/NOTES.md.
ROW_WINDOW_MAX_ROW_VALUES = 96
ROW_WINDOW_CHUNK_BYTES = 1 << 20


def _image_bytes(geo: ConvGeometry, itemsize: int) -> int:
    """Bytes of one image's im2col rows."""
    (kh, kw), (out_h, out_w) = geo.kernel, geo.out_hw
    return out_h * out_w * kh * kw * geo.weight_shape[1] * itemsize


def images_per_chunk(geo: ConvGeometry, itemsize: int, need_cache: bool = True) -> int:
    """Images per chunk: all of them up to ``CHUNK_ABOVE``, else ``CHUNK_BYTES``' worth,
    both times the BLAS threads that will multiply the chunk (one input channel on one
    thread: up to ``CHUNK_ABOVE_ONE_CHANNEL``).

    Without a backward pass to come (inference) there is nothing to keep or gather again,
    and every batch larger than a chunk is chunked. The thread count is the calling
    thread's at that moment (``_threads.blas_threads``), so the same batch may run whole
    on two threads and in chunks inside a shard; that changes only the order in which a
    chunked weight gradient is summed.
    """
    n, per_image = geo.input_shape[0], _image_bytes(geo, itemsize)
    threads = min(blas_threads(), MEASURED_THREADS)
    if geo.input_shape[1] == 1 and threads == 1:
        above = CHUNK_ABOVE_ONE_CHANNEL
    else:
        above = CHUNK_ABOVE * threads
    if need_cache and n * per_image <= above:
        return n
    return min(n, max(1, CHUNK_BYTES * threads // per_image))


def forward(
    x: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry, need_cache: bool = True
) -> tuple[np.ndarray | winograd.Tiles | None, np.ndarray] | None:
    """(cols, out) for the input ``x``, or None for the general im2col + GEMM.

    ``cols`` is None when the batch ran in chunks: backward gathers it again. For
    Winograd's algorithm it is the transformed tiles (``winograd.Tiles``), which backward
    hands back to that module.
    """
    if geo.groups > 1:
        return _grouped_forward(pad_nchw(x, geo.padding), w_mat, geo)
    if winograd.pays(geo, np.result_type(x, w_mat)):
        return winograd.forward(x, w_mat[0], geo, need_cache)
    chunk = images_per_chunk(geo, x.itemsize, need_cache)
    if chunk < geo.input_shape[0]:
        return None, _forward_in_chunks(x, w_mat[0], geo, chunk)
    if geo.input_shape[1] == 1:
        cols = _im2col_single_channel(pad_nchw(x, geo.padding), geo)
        return cols, cols[0] @ w_mat[0].T
    return None


def backward(
    dy: np.ndarray,
    dy_mat: np.ndarray,
    x: np.ndarray | None,
    cols: np.ndarray | winograd.Tiles | None,
    w_mat: np.ndarray,
    geo: ConvGeometry,
    need_input_grad: bool,
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(dW as (G, O/G, K), dx or None), or None for the general algorithm."""
    if isinstance(cols, winograd.Tiles):
        dw_mat, dxp = winograd.backward(dy, cols, geo, need_input_grad)
        return dw_mat, None if dxp is None else crop_padding(dxp, geo.padding)
    if geo.groups > 1:
        og = geo.weight_shape[0] // geo.groups
        dw_mat = np.matmul(dy_mat.reshape(geo.rows, geo.groups, og).transpose(1, 2, 0), cols)
        if not need_input_grad:
            return dw_mat, None
        return dw_mat, crop_padding(_grouped_input_grad(dy_mat, w_mat, geo), geo.padding)
    by_correlation = need_input_grad and _same_size(geo)
    if cols is None:
        dw_mat, dxp = _chunked_backward(
            dy_mat, x, w_mat[0], geo, need_input_grad and not by_correlation
        )
        if by_correlation:
            return dw_mat, input_grad_correlation(dy, w_mat[0], geo)
        return dw_mat, None if dxp is None else crop_padding(dxp, geo.padding)
    if by_correlation and geo.rows > ROW_WINDOW_MAX_ROWS:
        dw_mat = weight_grad_matrix(dy_mat, cols[0])[None]
        return dw_mat, input_grad_correlation(dy, w_mat[0], geo)
    if need_input_grad and geo.stride == (1, 1) and geo.rows <= ROW_WINDOW_MAX_ROWS:
        dw_mat = weight_grad_matrix(dy_mat, cols[0])[None]
        return dw_mat, crop_padding(input_grad_row_windows(dy, w_mat[0], geo), geo.padding)
    return None


def _same_size(geo: ConvGeometry) -> bool:
    """A stride-1 convolution without groups, of more than one input channel, whose output
    is its input's size: padding d*(k - 1) in all on each axis, split evenly or not ("same")."""
    return (
        geo.stride == (1, 1)
        and geo.groups == 1
        and geo.out_hw == tuple(geo.input_shape[2:])
        and geo.input_shape[1] > 1
    )


# dW = dY^T cols is a product over N*Ho*Wo rows, and OpenBLAS runs its two orientations at
# different speeds: dY^T cols is the faster for a row-major cols of this many rows or
# more, (cols^T dY)^T for fewer (a chunk of a large batch). Measured: bench/NOTES.md.
TALL_ROWS = 4096


def weight_grad_matrix(dy_mat: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """dW = dY^T cols as (O, K), in the GEMM orientation that runs fastest for cols."""
    if cols.flags.c_contiguous and cols.shape[0] >= TALL_ROWS:
        return dy_mat.T @ cols
    return (cols.T @ dy_mat).T


def _gather(xp: np.ndarray, geo: ConvGeometry, buffer: np.ndarray) -> np.ndarray:
    """The im2col matrix (rows, K) of the images in ``xp``, copied into ``buffer``.

    One input channel is gathered offset-major (runs of Wo pixels, not of kw), and the
    matrix is the transpose of that copy, which BLAS reads as it is.
    """
    (kh, kw), (out_h, out_w), c = geo.kernel, geo.out_hw, geo.input_shape[1]
    n = xp.shape[0]
    if c == 1:
        block = buffer[: kh * kw * n * out_h * out_w].reshape(kh, kw, n, out_h, out_w)
        np.copyto(block, _offset_major_windows(xp, geo))
        return block.reshape(kh * kw, -1).T
    block = buffer[: n * out_h * out_w * kh * kw * c].reshape(n, out_h, out_w, kh, kw, c)
    np.copyto(block, sliding_windows(xp, geo.kernel, geo.out_hw, geo.stride, geo.dilation))
    return block.reshape(n * out_h * out_w, -1)


def _forward_in_chunks(
    x: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry, chunk: int
) -> np.ndarray:
    """out (N*Ho*Wo, O) in chunks: by row windows where they pay (their own chunk size),
    else by im2col chunks of ``chunk`` images."""
    if _row_windows_pay(geo):
        return row_window_forward(x, w_mat, geo)
    return _chunked_forward(x, w_mat, geo, chunk)


def _chunked_forward(x: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry, chunk: int) -> np.ndarray:
    """out (N*Ho*Wo, O), one chunk of images at a time through reused buffers."""
    n, per_image = geo.input_shape[0], geo.out_hw[0] * geo.out_hw[1]
    out = np.empty((geo.rows, w_mat.shape[0]), np.result_type(x, w_mat))
    buffer = np.empty(chunk * per_image * w_mat.shape[1], x.dtype)
    padded = PaddedChunks(x, geo.padding, chunk)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        cols = _gather(padded(start, stop), geo, buffer)
        np.matmul(cols, w_mat.T, out=out[start * per_image : stop * per_image])
    return out


def _row_windows_pay(geo: ConvGeometry) -> bool:
    """A size-keeping stride-1 convolution, not 1x1, whose window rows are short."""
    kh, kw = geo.kernel
    return _same_size(geo) and kh * kw > 1 and kw * geo.input_shape[1] <= ROW_WINDOW_MAX_ROW_VALUES


def _width_windows(x: np.ndarray, width: int, kw: int, dw: int) -> np.ndarray:
    """Read-only view (N, H, width, kw, C) of an (N, C, H, W) array: under each of
    ``width`` columns, the kw pixels dw apart that one kernel row reads, with their
    channels (the sliding windows of a 1 x kw kernel)."""
    h = x.shape[2]
    return sliding_windows(x, (1, kw), (h, width), (1, 1), (1, dw))[:, :, :, 0]


def row_window_forward(x: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """out (N*Ho*Wo, O) of a stride-1 convolution from width windows, in chunks.

    y[n, h, w, o] = sum over i of g[i, n, h + dh*i, w, o], where g[i] = rows @ W_i: a row
    holds the window of one padded input row under output column w, (kw, C) values, and
    W_i[(j, c), o] = W[o, c, i, j]. The gather copies kw*C values per pixel of the padded
    height instead of kh*kw*C per output pixel; the GEMMs do Hp/Ho times the multiply-adds
    of im2col's. Each kernel row's products are a block of their own, so the kh shifted
    adds run over whole image rows (Wo*O values) rather than runs of O.
    """
    n, c = geo.input_shape[:2]
    out_channels = w_mat.shape[0]
    (kh, kw), (out_h, out_w), (dh, dw) = geo.kernel, geo.out_hw, geo.dilation
    padded_h = geo.padded_shape[2]
    w_rows = w_mat.reshape(out_channels, kh, kw * c).transpose(1, 2, 0)  # (kh, (j, c), O)
    out = np.empty((n, out_h, out_w, out_channels), np.result_type(x, w_mat))
    row_values, product_values = padded_h * out_w * kw * c, padded_h * out_w * kh * out_channels
    per_image = row_values * x.itemsize + product_values * out.itemsize
    chunk = max(1, min(n, ROW_WINDOW_CHUNK_BYTES // per_image))
    rows_buffer = np.empty(chunk * row_values, x.dtype)
    products_buffer = np.empty(chunk * product_values, out.dtype)
    padded = PaddedChunks(x, geo.padding, chunk)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        m = stop - start
        rows = rows_buffer[: m * row_values].reshape(m, padded_h, out_w, kw, c)
        np.copyto(rows, _width_windows(padded(start, stop), out_w, kw, dw))
        y = out[start:stop]
        g = products_buffer[: m * product_values].reshape(kh, m * padded_h * out_w, -1)
        np.matmul(rows.reshape(-1, kw * c), w_rows, out=g)
        g = g.reshape(kh, m, padded_h, out_w, out_channels)
        if kh == 1:
            np.copyto(y, g[0, :, :out_h])
        else:  # the first two rows' sum written at once saves a pass
            np.add(g[0, :, :out_h], g[1, :, dh : dh + out_h], out=y)
        for i in range(2, kh):
            y += g[i, :, i * dh : i * dh + out_h]
    return out.reshape(geo.rows, out_channels)


def _chunked_backward(
    dy_mat: np.ndarray, x: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry, need_input_grad: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """dW and the padded dx, chunk by chunk.

    Each chunk's im2col matrix is gathered again into one buffer and used for both its dW
    term and its dx while it is in cache. The chunk size need not be forward's: any
    split gives the same sums.
    """
    n, c = geo.input_shape[:2]
    (kh, kw), (out_h, out_w) = geo.kernel, geo.out_hw
    per_image, out_channels = out_h * out_w, w_mat.shape[0]
    chunk = images_per_chunk(geo, x.itemsize)
    buffer = np.empty(chunk * per_image * w_mat.shape[1], x.dtype)
    padded = PaddedChunks(x, geo.padding, chunk)
    dw_mat = np.zeros(w_mat.shape, np.result_type(dy_mat, x))  # (O, K)
    dx_dtype = np.result_type(dy_mat, w_mat)
    dxp = zeros_nchw(geo.padded_shape, dx_dtype) if need_input_grad else None
    w_offsets = w_mat.reshape(out_channels, kh * kw, c).transpose(1, 0, 2)  # (kh*kw, O, C)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rows = dy_mat[start * per_image : stop * per_image]
        dw_mat += weight_grad_matrix(rows, _gather(padded(start, stop), geo, buffer))
        if dxp is not None:
            parts = np.matmul(rows, w_offsets)  # (kh*kw, rows, C), as in conv.py
            col2im(
                parts.reshape(kh, kw, stop - start, out_h, out_w, c),
                geo.padded_shape,
                geo.stride,
                geo.dilation,
                out=dxp[start:stop],
            )
    return dw_mat[None], dxp


def input_grad_correlation(dy: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """dx of a stride-1 convolution as a convolution of dY with the flipped kernel.

    dx[n, c, h, w] = sum over (o, i, j) of dy[n, o, h + p_top - d*i, w + p_left - d*j]
    * W[o, c, i, j]. With dY padded by d*(k - 1) - p on each side and i' = kh - 1 - i, that
    is a correlation of the padded dY with W[o, c, kh - 1 - i', kw - 1 - j'], the forward
    pass's algorithm (gather and GEMM, in chunks) with the roles of C and O swapped.
    """
    n, c = geo.input_shape[:2]
    out_channels, _, kh, kw = geo.weight_shape
    (top, bottom), (left, right) = geo.padding
    dh, dw = geo.dilation
    margin = (
        (dh * (kh - 1) - top, dh * (kh - 1) - bottom),
        (dw * (kw - 1) - left, dw * (kw - 1) - right),
    )
    # ((i', j', o), c) rows: the flipped kernel in the im2col column order of dY's windows.
    flipped = w_mat.reshape(out_channels, kh, kw, c)[:, ::-1, ::-1, :].transpose(3, 1, 2, 0)
    back = conv_geometry(dy.shape, (c, out_channels, kh, kw), 1, margin, geo.dilation)
    chunk = images_per_chunk(back, dy.itemsize, need_cache=False)
    out = _forward_in_chunks(dy, flipped.reshape(c, -1), back, chunk)
    return out.reshape(n, *geo.input_shape[2:], c).transpose(0, 3, 1, 2)


def _offset_major_windows(xp: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """A one-channel input's windows as a (kh, kw, N, Ho, Wo) view: offset-major."""
    (kh, kw), (out_h, out_w), (sh, sw), (dh, dw) = geo.kernel, geo.out_hw, geo.stride, geo.dilation
    s_n, _, s_h, s_w = xp.strides
    return as_strided(
        xp,
        shape=(kh, kw, xp.shape[0], out_h, out_w),
        strides=(s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw),
        writeable=False,
    )


def _im2col_single_channel(xp: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """im2col of a one-channel input, gathered offset-major: (1, N*Ho*Wo, kh*kw) as a view.

    The transposed view of the (kh*kw, N*Ho*Wo) copy is still a valid BLAS operand, so
    neither GEMM needs another copy.
    """
    kh, kw = geo.kernel
    return _offset_major_windows(xp, geo).reshape(kh * kw, -1).T[None]


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
    dy_padded = pad_nchw(dy, ((0, 0), (margin, margin)))
    windows = _width_windows(dy_padded, padded_w, kw, dw)
    rows = windows.reshape(n * out_h * padded_w, kw * out_channels)
    # w_mat is (O, (i, j, c)); flip j and order as ((t, o), (i, c)).
    w_rows = w_mat.reshape(out_channels, kh, kw, c)[:, :, ::-1, :].transpose(2, 0, 1, 3)
    g = (rows @ w_rows.reshape(kw * out_channels, kh * c)).reshape(n, out_h, padded_w, kh, c)
    grad = np.zeros((n, padded_h, padded_w, c), dy.dtype)
    for i in range(kh):
        grad[:, i * dh : i * dh + out_h] += g[:, :, :, i]
    return grad.transpose(0, 3, 1, 2)
