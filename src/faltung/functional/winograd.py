"""Winograd's minimal filtering F(m x m, r x r) for stride-1 convolutions (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016).

One output tile of m x m pixels reads an input tile d of a x a pixels, a = m + r - 1:

    Y = A^T [ sum over c of (G g_c G^T) * (B^T d_c B) ] A        (* element-wise)

The a x a element-wise products, summed over the input channels, are a*a matrix products
(tiles x C) @ (C x O), one per position in the tile: for 5 x 5 kernels and F(4 x 4, 5 x 5),
64 products per 16 output pixels against im2col's 25 per pixel, 6.25 times fewer
multiply-adds. The transforms pass over arrays far smaller than the im2col matrix (an
input tile is shared by 16 outputs, not copied 25 times).

The backward pass is the same algorithm's adjoint, so its gradients are exactly those
of what forward computed:

    dM = A dY_tile A^T;  dU = V^T dM (per position);  dV = dM U^T;  dd = B dV B^T,
    dg = G^T dU G,

and each input tile's gradient is added back where the tile was read (tiles overlap by
r - 1 pixels). The weight gradient and the input gradient are products of the forward
pass's size, (C x tiles) @ (tiles x O) and (tiles x O) @ (O x C) per position.

The matrices come from Cook and Toom's construction (``transforms``). With the points
0, +-1, +-2, +-1/2, float32 results are within about 5e-6 of each result's scale (im2col's:
about 5e-7); the tests bound it. Integer inputs take im2col, which computes them exactly.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .layout import PaddedChunks
from .shapes import ConvGeometry

# Kernel sizes that take this path (``pays``); a test empties it to force the others.
# F(4 x 4, 3 x 3) lost to the resnet's 3 x 3 paths in whole steps (bench/NOTES.md).
KERNELS = ((5, 5),)
# The products' inner dimension is the input channels: with few, the products run slowly
# and the transforms, whose cost per pixel does not shrink with C, dominate. Measured
# from 3 to 32 channels: bench/NOTES.md, round nine.
MIN_CHANNELS = 8
# The products' rows are the batch's tiles: with few (one or two images of LeNet's conv2,
# 4 tiles each), 64 products of a few rows cost more in calls than im2col's three
# (bench/NOTES.md, round nine).
MIN_TILES = 16
# The interpolation points, in the order they are taken; infinity is always the last.
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0)
# Output tile side: F(4, 5) divides LeNet's 8 x 8 conv2 output exactly. F(2, 5) saves
# 2.8x the multiply-adds, not 6.25x, and was slower.
TILE = 4
# Images per chunk: one chunk's products (a*a, tiles, O) fill about this many bytes.
CHUNK_BYTES = 2 << 20


class Tiles(NamedTuple):
    """What forward keeps for backward: both operands of the per-position products."""

    v: np.ndarray  # (a*a, N*tiles, C): the input's tiles, B^T d B
    u: np.ndarray  # (a*a, C, O): the filters, G g G^T


@functools.cache
def transforms(m: int, r: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T (m, a), G (a, r), B^T (a, a)) of F(m, r), read-only, so that for any d (a,)
    and g (r,), ``A^T @ ((G @ g) * (B^T @ d))`` is the correlation
    y[i] = sum over k of d[i + k] g[k], i < m.

    Derivation. A linear convolution s = g * h (deg g = r - 1, deg h = m - 1, deg s = a - 1)
    is known from its values at a - 1 points p_j and at infinity (s_inf, the product of the
    leading coefficients): s(x) = sum over j of s(p_j) L_j(x) + s_inf P(x), with L_j the
    Lagrange polynomials of the points and P(x) the product of (x - p_j). Evaluation is
    E_g g and E_h h (Vandermonde rows, and a last row picking the leading coefficient), so
    s = L [(E_g g) * (E_h h)], the columns of L holding the coefficients of each L_j and of
    P. For fixed g that is s = T h with T = L diag(E_g g) E_h, and the correlation of d
    with g is T's transpose: y = T^T d = E_h^T [(E_g g) * (L^T d)]. So A^T = E_h^T, G = E_g
    and B^T = L^T, each L_j's denominator moved from B^T into G, where it costs nothing.
    """
    a = m + r - 1
    if a - 1 > len(POINTS):
        raise ValueError(f"F({m}, {r}) needs {a - 1} finite points; POINTS has {len(POINTS)}")
    points = np.array(POINTS[: a - 1], np.float64)
    at, g, bt = np.zeros((m, a)), np.zeros((a, r)), np.zeros((a, a))
    for j, p in enumerate(points):
        others = np.delete(points, j)
        bt[j, : a - 1] = np.polynomial.polynomial.polyfromroots(others)
        g[j] = p ** np.arange(r) / np.prod(p - others)
        at[:, j] = p ** np.arange(m)
    bt[a - 1] = np.polynomial.polynomial.polyfromroots(points)
    g[a - 1, r - 1] = 1.0
    at[m - 1, a - 1] = 1.0
    return _read_only(at, dtype), _read_only(g, dtype), _read_only(bt, dtype)


@functools.cache
def _filter_matrix(m: int, r: int, dtype: np.dtype) -> np.ndarray:
    """G (x) G, (a*a, r*r): G g G^T of every filter at once as one product, whose inner
    dimension r*r and output a*a suit BLAS better than two products with r or a."""
    _, g, _ = transforms(m, r, dtype)
    return _read_only(np.kron(g, g), dtype)


def _read_only(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A cached matrix: a write by a caller would change every later convolution."""
    out = array.astype(dtype)
    out.flags.writeable = False
    return out


def pays(geo: ConvGeometry, dtype: np.dtype) -> bool:
    """Floating-point data, square 5 x 5 kernels (``KERNELS``), stride and dilation 1, no
    groups, at least ``MIN_CHANNELS`` input channels, an output of at least a tile each way,
    and at least ``MIN_TILES`` tiles in the batch."""
    return (
        np.dtype(dtype).kind == "f"
        and geo.kernel in KERNELS
        and geo.stride == (1, 1)
        and geo.dilation == (1, 1)
        and geo.groups == 1
        and geo.input_shape[1] >= MIN_CHANNELS
        and min(geo.out_hw) >= TILE
        and geo.input_shape[0] * _tiling(geo).per_image >= MIN_TILES
    )


def _sandwich(left: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """left (q, p) applied on both sides: out[x, y] = sum over (i, j) of left[x, i] *
    left[y, j] * tiles[i, j] for tiles (p, p, ...), as two products; (q, q, rest) out."""
    q, p = left.shape
    half = (left @ tiles.reshape(p, -1)).reshape(q, p, -1)  # contracts i
    return np.matmul(left, half)  # for each x, left @ half[x]: contracts j


class _Tiling(NamedTuple):
    """How F(m, r) tiles one convolution's output."""

    m: int
    r: int
    rows: int  # tile rows per image
    cols: int  # tile columns per image

    @property
    def a(self) -> int:  # input tile side
        return self.m + self.r - 1

    @property
    def per_image(self) -> int:
        return self.rows * self.cols

    @property
    def extent(self) -> tuple[int, int]:
        """The input size the tiles read: the padded input, grown to whole tiles."""
        return self.rows * self.m + self.r - 1, self.cols * self.m + self.r - 1

    @property
    def blocks(self) -> int:
        """m x m blocks an input tile spans each way (tiles start every m pixels)."""
        return -(-self.a // self.m)


def _tiling(geo: ConvGeometry) -> _Tiling:
    out_h, out_w = geo.out_hw
    return _Tiling(TILE, geo.kernel[0], -(-out_h // TILE), -(-out_w // TILE))


def _images_per_chunk(t: _Tiling, out_channels: int, itemsize: int, n: int) -> int:
    per_image = t.a * t.a * t.per_image * out_channels * itemsize
    return max(1, min(n, CHUNK_BYTES // per_image))


def _input_tiles(images: np.ndarray, t: _Tiling, out: np.ndarray) -> np.ndarray:
    """Copy every a x a input tile of NHWC ``images`` into ``out`` as (a, a, tiles*C)."""
    n, _, _, c = images.shape
    s_n, s_h, s_w, s_c = images.strides
    shape = (t.a, t.a, n, t.rows, t.cols, c)
    view = as_strided(images, shape, (s_h, s_w, s_n, t.m * s_h, t.m * s_w, s_c), writeable=False)
    block = out[: view.size].reshape(shape)
    np.copyto(block, view)
    return block.reshape(t.a, t.a, -1)


def filter_transform(w_mat: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """U = G g G^T for every (c, o): (a*a, C, O), from the (O, (i, j, c)) weight matrix."""
    t = _tiling(geo)
    out_channels, c = w_mat.shape[0], geo.input_shape[1]
    g = w_mat.reshape(out_channels, t.r * t.r, c).transpose(1, 2, 0)  # ((i, j), c, o)
    u = _filter_matrix(t.m, t.r, w_mat.dtype) @ g.reshape(t.r * t.r, -1)
    return u.reshape(t.a * t.a, c, out_channels)


def forward(
    x: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry, need_cache: bool = True
) -> tuple[Tiles | None, np.ndarray]:
    """(Tiles for backward, or None; out (N*Ho*Wo, O)) of the stride-1 convolution, in
    the dtype NumPy's product of ``x`` and ``w_mat`` would have."""
    t = _tiling(geo)
    n, c = geo.input_shape[:2]
    out_channels, (out_h, out_w) = w_mat.shape[0], geo.out_hw
    dtype = np.result_type(x, w_mat)
    at, _, bt = transforms(t.m, t.r, dtype)
    u = filter_transform(w_mat.astype(dtype, copy=False), geo)
    chunk = _images_per_chunk(t, out_channels, dtype.itemsize, n)
    tiles_buffer = np.empty(t.a * t.a * chunk * t.per_image * c, dtype)
    v_all = np.empty((t.a * t.a, n * t.per_image, c), dtype) if need_cache else None
    out = np.empty((n, out_h, out_w, out_channels), dtype)
    whole_tiles = (t.rows * t.m, t.cols * t.m) == (out_h, out_w)
    # The padded input grown to whole tiles, in the product's dtype, a chunk at a time.
    padded = PaddedChunks(x, geo.padding, chunk, t.extent, dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        k = stop - start
        images = padded(start, stop).transpose(0, 2, 3, 1)  # NHWC
        v = _sandwich(bt, _input_tiles(images, t, tiles_buffer)).reshape(t.a * t.a, -1, c)
        if v_all is not None:
            v_all[:, start * t.per_image : stop * t.per_image] = v
        y = _sandwich(at, np.matmul(v, u).reshape(t.a, t.a, -1))  # (m, m, tiles*O)
        y = y.reshape(t.m, t.m, k, t.rows, t.cols, -1).transpose(2, 3, 0, 4, 1, 5)
        if whole_tiles:
            np.copyto(out[start:stop].reshape(k, t.rows, t.m, t.cols, t.m, -1), y)
        else:  # crop the last tiles' overhang
            out[start:stop] = y.reshape(k, t.rows * t.m, t.cols * t.m, -1)[:, :out_h, :out_w]
    return (Tiles(v_all, u) if need_cache else None), out.reshape(geo.rows, out_channels)


def backward(
    dy: np.ndarray, tiles: Tiles, geo: ConvGeometry, need_input_grad: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(dW as (1, O, K) in im2col's column order, the padded dx (N, C, Hp, Wp) or None)."""
    t = _tiling(geo)
    n, c = geo.input_shape[:2]
    out_channels = dy.shape[1]
    dtype = np.result_type(dy, tiles.v)
    _, _, bt = transforms(t.m, t.r, dtype)
    chunk = _images_per_chunk(t, out_channels, dtype.itemsize, n)
    output_tiles = _OutputGradTiles(dy, geo, t, chunk, dtype)
    du = np.zeros((t.a * t.a, c, out_channels), dtype)
    dxp = None
    if need_input_grad:  # the tiles' extent, grown to whole blocks for _add_tiles
        grown = (t.rows + t.blocks - 1) * t.m, (t.cols + t.blocks - 1) * t.m
        dxp = np.zeros((n, *grown, c), dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        dm = output_tiles(start, stop)  # (a*a, tiles, O)
        v = tiles.v[:, start * t.per_image : stop * t.per_image]
        du += np.matmul(v.transpose(0, 2, 1), dm)
        if dxp is not None:
            dv = np.matmul(dm, tiles.u.transpose(0, 2, 1)).reshape(t.a, t.a, -1)
            dd = _sandwich(bt.T, dv)  # B dV B^T
            _add_tiles(dd.reshape(t.a, t.a, stop - start, t.rows, t.cols, c), dxp[start:stop], t)
    dg = _filter_matrix(t.m, t.r, dtype).T @ du.reshape(t.a * t.a, -1)  # G^T dU G
    dw_mat = dg.reshape(t.r * t.r, c, out_channels).transpose(2, 0, 1)  # (o, (i, j), c)
    dw_mat = dw_mat.reshape(1, out_channels, -1)
    if dxp is None:
        return dw_mat, None
    hp, wp = geo.padded_shape[2:]
    return dw_mat, dxp[:, :hp, :wp].transpose(0, 3, 1, 2)


class _OutputGradTiles:
    """dM = A dY_tile A^T, chunk by chunk: dY's m x m tiles gathered as (m, m, tiles*O)
    in one reused buffer (an output that does not divide into tiles is grown with zeros
    first), then transformed."""

    def __init__(
        self, dy: np.ndarray, geo: ConvGeometry, t: _Tiling, chunk: int, dtype: np.dtype
    ) -> None:
        self.dy, self.t, self.out_hw = dy.transpose(0, 2, 3, 1), t, geo.out_hw
        self.a_mat = transforms(t.m, t.r, dtype)[0].T  # A, (a, m)
        size = (t.rows * t.m, t.cols * t.m)
        self.grown = None
        if size != geo.out_hw:
            self.grown = np.zeros((chunk, *size, dy.shape[1]), dtype)
        self.buffer = np.empty(t.m * t.m * chunk * t.per_image * dy.shape[1], dtype)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        t, (out_h, out_w), k = self.t, self.out_hw, stop - start
        source = self.dy[start:stop]
        if self.grown is not None:
            self.grown[:k, :out_h, :out_w] = source
            source = self.grown[:k]
        out_channels = source.shape[-1]
        block = self.buffer[: t.m * t.m * k * t.per_image * out_channels]
        block = block.reshape(t.m, t.m, k, t.rows, t.cols, out_channels)
        np.copyto(
            block.transpose(2, 3, 0, 4, 1, 5),
            source.reshape(k, t.rows, t.m, t.cols, t.m, out_channels),
        )
        return _sandwich(self.a_mat, block).reshape(t.a * t.a, -1, out_channels)


def _add_tiles(dd: np.ndarray, dxp: np.ndarray, t: _Tiling) -> None:
    """Add each tile's gradient dd (a, a, N, rows, cols, C) into dxp (N, H, W, C) where
    the tile was read. dxp's H and W are whole blocks: (rows + blocks - 1) * m.

    Tiles start every m pixels, so tile (ty, tx) covers blocks ty..ty + blocks - 1 of
    m x m pixels each way: one strided add per block offset, not one per pixel offset.
    """
    n, height, width, c = dxp.shape
    grid = dxp.reshape(n, height // t.m, t.m, width // t.m, t.m, c)
    for bi in range(t.blocks):
        rows = min(t.m, t.a - bi * t.m)  # the last block may be partial
        for bj in range(t.blocks):
            cols = min(t.m, t.a - bj * t.m)
            part = dd[bi * t.m : bi * t.m + rows, bj * t.m : bj * t.m + cols]
            target = grid[:, bi : bi + t.rows, :rows, bj : bj + t.cols, :cols]
            target += part.transpose(2, 3, 0, 4, 1, 5)
