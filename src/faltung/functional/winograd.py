"""Winograd's minimal filtering F(m x m, r x r) for stride-1 convolutions (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016).

One output tile of m x m pixels reads an input tile d of a x a pixels, a = m + r - 1:

    Y = A^T [ sum over c of (G g_c G^T) * (B^T d_c B) ] A        (* element-wise)

The a x a element-wise products, summed over the input channels, are a*a matrix products
(tiles x C) @ (C x O), one per position in the tile: for LeNet's 5 x 5 kernels and
F(4 x 4, 5 x 5), 64 products per 16 output pixels against im2col's 25 per pixel, 6.25
times fewer multiply-adds. The transforms cost passes over arrays far smaller than the
im2col matrix (an input tile is shared by 16 outputs, not copied 25 times).

The backward pass is the same algorithm's adjoint, so its gradients are exactly those
of what forward computed:

    dM = A dY_tile A^T;  dU = V^T dM (per position);  dV = dM U^T;  dd = B dV B^T,
    dg = G^T dU G,

and each input tile's gradient is added back where the tile was read (tiles overlap by
r - 1 pixels). The weight gradient costs one more product per position, (C x tiles) @
(tiles x O), against im2col's (K x rows) @ (rows x O).

The matrices come from Cook and Toom's construction: evaluate the two polynomials at
a - 1 points and at infinity, multiply, interpolate (``transforms``). The points 0, +-1,
+-2, +-1/2 keep float32's error a few times 1e-7 of the output's scale for F(4, 5); the
tests bound it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .shapes import ConvGeometry

# Kernel sizes that take this path (``pays``); a test empties it to force the others.
KERNELS = ((5, 5),)
# The products' inner dimension is the input channels. With few, they run slowly and the
# transforms, whose cost does not shrink with C, dominate: forward and backward of 32
# images, one thread, Winograd against im2col: 3 channels 0.88x, 6 0.95x, 8 1.03-1.50x,
# 12 1.40x, 16 1.54x, LeNet's 20 (to 50) 2.5x (bench/NOTES.md, round nine). The 3 x 3
# kernels of F(4 x 4, 3 x 3) lost in the resnet's whole steps (0.85-0.98x).
MIN_CHANNELS = 8
# The interpolation points, in the order they are taken; infinity is always the last.
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0)
# Output tile side. F(4, 5) divides LeNet's 8 x 8 conv2 output exactly; F(2, 5) did 2.8x
# fewer multiply-adds than im2col, not 6.25x, and ran slower (bench/NOTES.md, round nine).
TILE = 4
# Images per chunk: the products' output (a*a, tiles, O) of one chunk is about this size,
# so that it is still in cache when the output transform reads it.
CHUNK_BYTES = 2 << 20


class Tiles(NamedTuple):
    """What forward keeps for backward: both operands of the per-position products."""

    v: np.ndarray  # (a*a, N*tiles, C): the input's tiles, B^T d B
    u: np.ndarray  # (a*a, C, O): the filters, G g G^T


@functools.cache
def transforms(m: int, r: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T (m, a), G (a, r), B^T (a, a)) of F(m, r), so that for any d (a,) and g (r,)
    ``A^T @ ((G @ g) * (B^T @ d))`` is the correlation y[i] = sum over k of d[i + k] g[k].

    Derivation: a linear convolution s = g * h (deg g = r - 1, deg h = m - 1) is read off
    its values at the points p_j and at infinity (the product of leading coefficients):
    s(x) = sum over j of s(p_j) L_j(x) + s_inf M(x), with M(x) the product of (x - p_j)
    and L_j the Lagrange polynomials. That gives s = C [(E_g g) * (E_h h)], with E the
    evaluation (Vandermonde) matrices; the correlation y is its transpose in h,
    y = E_h^T [(E_g g) * (C^T d)]. So A^T = E_h^T, G = E_g, B^T = C^T, with each L_j's
    denominator moved from B^T into G, where it costs nothing.
    """
    a = m + r - 1
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
    return at.astype(dtype), g.astype(dtype), bt.astype(dtype)


def pays(geo: ConvGeometry) -> bool:
    """Square 5 x 5 kernels (``KERNELS``), stride and dilation 1, no groups, at least
    ``MIN_CHANNELS`` input channels, and an output of at least one tile each way."""
    return (
        geo.kernel in KERNELS
        and geo.stride == (1, 1)
        and geo.dilation == (1, 1)
        and geo.groups == 1
        and geo.input_shape[1] >= MIN_CHANNELS
        and min(geo.out_hw) >= TILE
    )


def _sandwich(left: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """left (q, p) applied on both sides: out[x, y] = sum over (i, j) of left[x, i] *
    left[y, j] * tiles[i, j] for tiles (p, p, ...), as two products; (q, q, rest) out."""
    q, p = left.shape
    half = (left @ tiles.reshape(p, -1)).reshape(q, p, -1)  # contracts i
    return np.matmul(left, half)  # for each x, left @ half[x]: contracts j


class _Layout(NamedTuple):
    m: int
    r: int
    tiles_hw: tuple[int, int]  # tile rows and columns per image
    extent: tuple[int, int]  # the padded input's size, grown to whole tiles

    @property
    def a(self) -> int:
        return self.m + self.r - 1

    @property
    def per_image(self) -> int:
        return self.tiles_hw[0] * self.tiles_hw[1]


def _layout(geo: ConvGeometry) -> _Layout:
    m, r = TILE, geo.kernel[0]
    th, tw = (-(-side // m) for side in geo.out_hw)
    return _Layout(m, r, (th, tw), (th * m + r - 1, tw * m + r - 1))


def _images_per_chunk(lay: _Layout, out_channels: int, itemsize: int, n: int) -> int:
    per_image = lay.a * lay.a * lay.per_image * out_channels * itemsize
    return max(1, min(n, CHUNK_BYTES // per_image))


class _PaddedImages:
    """Chunks of the input as NHWC arrays of the tiles' extent: padding, plus zeros to
    whole tiles, in one reused buffer whose border is written once."""

    def __init__(self, x: np.ndarray, geo: ConvGeometry, lay: _Layout, chunk: int) -> None:
        self.nhwc = x.transpose(0, 2, 3, 1)
        (top, _), (left, _) = geo.padding
        h, w = x.shape[2:]
        self.interior = (slice(top, top + h), slice(left, left + w))
        self.whole = lay.extent == (h, w) and (top, left) == (0, 0)
        if not self.whole:
            self.buffer = np.zeros((chunk, *lay.extent, x.shape[1]), x.dtype)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if self.whole:
            return self.nhwc[start:stop]
        out = self.buffer[: stop - start]
        out[:, self.interior[0], self.interior[1]] = self.nhwc[start:stop]
        return out


def _input_tiles(images: np.ndarray, lay: _Layout, out: np.ndarray) -> np.ndarray:
    """Copy every a x a input tile of NHWC ``images`` into ``out`` as (a, a, tiles, C)."""
    n, _, _, c = images.shape
    (th, tw), a, m = lay.tiles_hw, lay.a, lay.m
    s_n, s_h, s_w, s_c = images.strides
    view = as_strided(
        images, (a, a, n, th, tw, c), (s_h, s_w, s_n, m * s_h, m * s_w, s_c), writeable=False
    )
    block = out[: a * a * n * lay.per_image * c].reshape(a, a, n, th, tw, c)
    np.copyto(block, view)
    return block.reshape(a, a, -1)


@functools.cache
def _filter_matrix(m: int, r: int, dtype: np.dtype) -> np.ndarray:
    """G (x) G, (a*a, r*r): G g G^T of every filter at once as one product, whose inner
    dimension r*r and output a*a suit BLAS better than two products with r or a."""
    _, g, _ = transforms(m, r, dtype)
    return np.kron(g, g)


def filter_transform(w_mat: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """U = G g G^T for every (c, o): (a*a, C, O), from the (O, (i, j, c)) weight matrix."""
    lay = _layout(geo)
    out_channels, c = w_mat.shape[0], geo.input_shape[1]
    g = w_mat.reshape(out_channels, lay.r * lay.r, c).transpose(1, 2, 0)  # ((i, j), c, o)
    u = _filter_matrix(lay.m, lay.r, w_mat.dtype) @ g.reshape(lay.r * lay.r, -1)
    return u.reshape(lay.a * lay.a, c, out_channels)


def forward(
    x: np.ndarray, w_mat: np.ndarray, geo: ConvGeometry, need_cache: bool = True
) -> tuple[Tiles | None, np.ndarray]:
    """(Tiles for backward, or None; out (N*Ho*Wo, O)) of the stride-1 convolution."""
    lay = _layout(geo)
    at, _, bt = transforms(lay.m, lay.r, x.dtype)
    n, c = geo.input_shape[:2]
    out_channels, (out_h, out_w), (th, tw), a, m = (
        w_mat.shape[0],
        geo.out_hw,
        lay.tiles_hw,
        lay.a,
        lay.m,
    )
    u = filter_transform(w_mat, geo)
    dtype = np.result_type(x, w_mat)
    chunk = _images_per_chunk(lay, out_channels, dtype.itemsize, n)
    images = _PaddedImages(x, geo, lay, chunk)
    tiles_buffer = np.empty(a * a * chunk * lay.per_image * c, x.dtype)
    v_all = np.empty((a * a, n * lay.per_image, c), x.dtype) if need_cache else None
    out = np.empty((n, out_h, out_w, out_channels), dtype)
    whole_tiles = (th * m, tw * m) == (out_h, out_w)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        v = _sandwich(bt, _input_tiles(images(start, stop), lay, tiles_buffer))
        v = v.reshape(a * a, -1, c)
        if v_all is not None:
            v_all[:, start * lay.per_image : stop * lay.per_image] = v
        y = _sandwich(at, np.matmul(v, u).reshape(a, a, -1))  # (m, m, tiles*O)
        y = y.reshape(m, m, stop - start, th, tw, out_channels).transpose(2, 3, 0, 4, 1, 5)
        if whole_tiles:
            np.copyto(out[start:stop].reshape(stop - start, th, m, tw, m, -1), y)
        else:
            full = y.reshape(stop - start, th * m, tw * m, out_channels)
            out[start:stop] = full[:, :out_h, :out_w]
    tiles = Tiles(v_all, u) if need_cache else None
    return tiles, out.reshape(geo.rows, out_channels)


def backward(
    dy: np.ndarray, tiles: Tiles, geo: ConvGeometry, need_input_grad: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(dW as (1, O, K) in im2col's column order, the padded dx (N, C, Hp, Wp) or None)."""
    lay = _layout(geo)
    at, _, bt = transforms(lay.m, lay.r, dy.dtype)
    n, c = geo.input_shape[:2]
    out_channels, (out_h, out_w), (th, tw), a, m = (
        dy.shape[1],
        geo.out_hw,
        lay.tiles_hw,
        lay.a,
        lay.m,
    )
    dy_nhwc = dy.transpose(0, 2, 3, 1)
    chunk = _images_per_chunk(lay, out_channels, dy.itemsize, n)
    du = np.zeros((a * a, c, out_channels), np.result_type(dy, tiles.v))
    blocks = -(-a // m)  # an input tile spans this many output tiles each way
    dxp = None
    if need_input_grad:
        dxp = np.zeros((n, (th + blocks - 1) * m, (tw + blocks - 1) * m, c), dy.dtype)
    whole_tiles = (th * m, tw * m) == (out_h, out_w)
    # dY grown to whole tiles, its overhang zero, when the output does not divide.
    grown = None if whole_tiles else np.zeros((chunk, th * m, tw * m, out_channels), dy.dtype)
    tiles_buffer = np.empty(m * m * chunk * lay.per_image * out_channels, dy.dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        k = stop - start
        source = dy_nhwc[start:stop]
        if grown is not None:
            grown[:k, :out_h, :out_w] = source
            source = grown[:k]
        block = tiles_buffer[: m * m * k * lay.per_image * out_channels]
        block = block.reshape(m, m, k, th, tw, out_channels)
        np.copyto(block.transpose(2, 3, 0, 4, 1, 5), source.reshape(k, th, m, tw, m, -1))
        dm = _sandwich(at.T, block).reshape(a * a, -1, out_channels)  # A dY A^T
        v = tiles.v[:, start * lay.per_image : stop * lay.per_image]
        du += np.matmul(v.transpose(0, 2, 1), dm)
        if dxp is not None:
            dv = np.matmul(dm, tiles.u.transpose(0, 2, 1)).reshape(a, a, -1)
            dd = _sandwich(bt.T, dv).reshape(a, a, k, th, tw, c)  # B dV B^T
            _add_tiles(dd, dxp[start:stop], lay)
    dg = _filter_matrix(m, lay.r, du.dtype).T @ du.reshape(a * a, -1)  # G^T dU G
    dw_mat = (
        dg.reshape(lay.r * lay.r, c, out_channels).transpose(2, 0, 1).reshape(1, out_channels, -1)
    )
    if dxp is None:
        return dw_mat, None
    hp, wp = geo.padded_shape[2:]
    return dw_mat, dxp[:, :hp, :wp].transpose(0, 3, 1, 2)


def _add_tiles(dd: np.ndarray, dxp: np.ndarray, lay: _Layout) -> None:
    """Add each tile's gradient dd (a, a, N, th, tw, C) where the tile was read in dxp
    (N, H, W, C). Tiles start every m pixels, so an a-pixel tile covers ceil(a/m) blocks
    of m x m pixels each way: one strided add per block, not one per pixel offset."""
    n, c = dxp.shape[0], dxp.shape[3]
    (th, tw), a, m = lay.tiles_hw, lay.a, lay.m
    grid = dxp.reshape(n, dxp.shape[1] // m, m, dxp.shape[2] // m, m, c)
    for bi in range(-(-a // m)):
        rows = min(m, a - bi * m)
        for bj in range(-(-a // m)):
            cols = min(m, a - bj * m)
            part = dd[bi * m : bi * m + rows, bj * m : bj * m + cols]
            grid[:, bi : bi + th, :rows, bj : bj + tw, :cols] += part.transpose(2, 3, 0, 4, 1, 5)
