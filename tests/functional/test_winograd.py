"""Winograd's F(4 x 4, 5 x 5): its matrices, and the convolution it computes, against the
reference kernels, forward and backward, in every shape and chunking it takes."""

from __future__ import annotations

import numpy as np
import pytest

from faltung import functional as fast
from faltung.functional import conv_fast, winograd
from faltung.functional import reference as ref
from faltung.functional.layout import is_channels_last
from faltung.functional.shapes import conv_geometry
from faltung.gradcheck import gradcheck
from faltung.layers import Conv2D


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (6, 3), (2, 5), (3, 5), (4, 5)])
def test_the_transforms_compute_a_correlation(m, r):
    at, g, bt = winograd.transforms(m, r, np.dtype(np.float64))
    rng = np.random.default_rng(m * 10 + r)
    d, w = rng.standard_normal(m + r - 1), rng.standard_normal(r)
    expected = [d[i : i + r] @ w for i in range(m)]
    np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), expected, rtol=1e-12, atol=1e-12)


def _geometry(x_shape, padding=0, stride=1, dilation=1, groups=1, cin=None):
    cin = x_shape[1] // groups if cin is None else cin
    return conv_geometry(x_shape, (6, cin, 5, 5), stride, padding, dilation, groups)


def test_it_is_taken_for_5x5_kernels_over_enough_channels_only():
    def pays(geo, dtype=np.float32):
        return winograd.pays(geo, np.dtype(dtype))

    assert pays(_geometry((5, 20, 12, 12)))  # LeNet's conv2
    assert pays(_geometry((4, 20, 12, 12)))  # 16 tiles
    assert not pays(_geometry((3, 20, 12, 12)))  # 12 tiles: im2col's three products win
    assert pays(_geometry((5, 8, 12, 12)), np.float64)
    assert not pays(_geometry((5, 8, 12, 12)), np.int64)  # its fractions would truncate
    assert not pays(_geometry((5, 1, 28, 28)))  # LeNet's conv1
    assert not pays(_geometry((5, 6, 14, 14)))  # too few channels
    assert not pays(_geometry((5, 8, 12, 12), stride=2))
    assert not pays(_geometry((5, 8, 12, 12), dilation=2))
    assert not pays(_geometry((5, 16, 12, 12), groups=2))
    assert not pays(_geometry((5, 8, 7, 7)))  # a 3 x 3 output, under one tile
    assert not pays(conv_geometry((5, 8, 9, 9), (6, 8, 3, 3), 1, 0, 1, 1))


def test_its_cached_matrices_are_read_only():
    for matrix in winograd.transforms(4, 5, np.dtype(np.float32)):
        with pytest.raises(ValueError):
            matrix[0, 0] = 1.0


def test_too_few_points_is_a_clear_error():
    with pytest.raises(ValueError, match="finite points"):
        winograd.transforms(8, 5, np.dtype(np.float64))


@pytest.fixture
def few_channels_too(monkeypatch):
    """Small problems, down to two channels and one tile, take the path too: it is exact
    for any."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 2)
    monkeypatch.setattr(winograd, "MIN_TILES", 1)


@pytest.mark.parametrize(
    "layer,shape",
    [
        (lambda: Conv2D(3, 4, 5, rng=0), (2, 3, 12, 8)),  # whole tiles
        (lambda: Conv2D(2, 3, 5, padding=1, rng=0), (1, 2, 7, 6)),  # 5 x 4: ragged
    ],
)
def test_layer_gradients_through_winograd(layer, shape, few_channels_too):
    conv = layer()
    x = np.random.default_rng(0).standard_normal(shape)
    conv.forward(x)
    assert isinstance(conv._cache.cols, winograd.Tiles)  # the path under test
    result = gradcheck(conv, x)
    assert result.passed(1e-6), str(result)


SHAPES = [
    # (N, C, H, W), O, padding: whole tiles, ragged tiles, padding, one image
    ((3, 20, 12, 12), 50, 0),
    ((2, 3, 11, 9), 4, 0),
    ((4, 2, 7, 8), 5, 2),
    ((1, 5, 9, 13), 3, (1, 2)),
    ((3, 4, 6, 6), 2, "same"),
    ((2, 3, 8, 9), 2, ((0, 3), (2, 1))),  # uneven padding
    ((5, 8, 11, 9), 3, 0),  # ragged tiles at the default MIN_CHANNELS
]


def _inputs(shape, out_channels, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((out_channels, shape[1], 5, 5)) / (5 * shape[1] ** 0.5)).astype(dtype)
    return x, w, rng.standard_normal(out_channels).astype(dtype)


@pytest.mark.parametrize("images_per_chunk", [None, 1, 2])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape,out_channels,padding", SHAPES)
def test_forward_and_backward_match_the_reference_in_float64(
    shape, out_channels, padding, channels_last, images_per_chunk, monkeypatch, few_channels_too
):
    """Whole, one image per chunk, and two (the last chunk short when N is odd)."""
    if images_per_chunk is not None:
        monkeypatch.setattr(winograd, "_images_per_chunk", lambda *args: images_per_chunk)
    rng = np.random.default_rng(0)
    x, w, b = _inputs(shape, out_channels, np.float64, rng)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y, cache = fast.conv2d_forward(x, w, b, padding=padding)
    assert isinstance(cache.cols, winograd.Tiles) and is_channels_last(y)
    y_ref, cache_ref = ref.conv2d_forward(x, w, b, padding=padding)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        fast.conv2d_forward(x, w, b, padding=padding, need_cache=False)[0],
        y_ref,
        rtol=1e-10,
        atol=1e-10,
    )
    dy = rng.standard_normal(y.shape)
    if channels_last:  # as the layers after a convolution pass it back
        dy = np.ascontiguousarray(dy.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    dy_before = dy.copy()
    for need_input_grad in (True, False):
        got = fast.conv2d_backward(dy, cache, need_input_grad)
        expected = ref.conv2d_backward(dy, cache_ref, need_input_grad)
        for a, e in zip(got, expected):
            if e is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)
    assert is_channels_last(fast.conv2d_backward(dy, cache)[0])
    np.testing.assert_array_equal(dy, dy_before)  # an incoming gradient is never written


@pytest.mark.parametrize("x_dtype,w_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_mixed_dtypes_compute_in_the_wider_one(x_dtype, w_dtype):
    rng = np.random.default_rng(3)
    x, w, b = _inputs((4, 8, 10, 9), 3, np.float64, rng)
    x, w = x.astype(x_dtype), w.astype(w_dtype)
    y, cache = fast.conv2d_forward(x, w, b)
    assert isinstance(cache.cols, winograd.Tiles) and y.dtype == np.float64
    y_ref, cache_ref = ref.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    for a, e in zip(fast.conv2d_backward(dy, cache), ref.conv2d_backward(dy, cache_ref)):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)


def test_integer_inputs_take_im2col_and_stay_exact():
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, (2, 8, 9, 9))
    w = rng.integers(-2, 3, (3, 8, 5, 5))
    y, cache = fast.conv2d_forward(x, w)
    assert not isinstance(cache.cols, winograd.Tiles)
    np.testing.assert_array_equal(y, ref.conv2d_forward(x, w)[0])


@pytest.mark.parametrize("shape,out_channels,padding", SHAPES)
def test_float32_error_stays_near_im2cols(shape, out_channels, padding, few_channels_too):
    """F(4, 5)'s float32 rounding, against the float64 result, as a fraction of each
    result's largest value: measured 1e-6 to 5e-6 (im2col's: about 2e-7)."""
    rng = np.random.default_rng(1)
    x, w, b = _inputs(shape, out_channels, np.float32, rng)
    y, cache = fast.conv2d_forward(x, w, b, padding=padding)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = (y, *fast.conv2d_backward(dy, cache))
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    y64, cache64 = ref.conv2d_forward(x64, w64, b64, padding=padding)
    expected = (y64, *ref.conv2d_backward(dy.astype(np.float64), cache64))
    for a, e in zip(got, expected):
        assert a.dtype == np.float32
        assert np.abs(a - e).max() <= 2e-5 * np.abs(e).max()


def test_im2col_and_winograd_agree_on_lenets_second_convolution(monkeypatch):
    rng = np.random.default_rng(2)
    x, w, b = _inputs((6, 20, 12, 12), 50, np.float64, rng)
    y, cache = fast.conv2d_forward(x, w, b)
    dy = rng.standard_normal(y.shape)
    grads = fast.conv2d_backward(dy, cache)
    monkeypatch.setattr(winograd, "KERNELS", ())
    y2, cache2 = fast.conv2d_forward(x, w, b)
    assert not isinstance(cache2.cols, winograd.Tiles)
    np.testing.assert_allclose(y, y2, rtol=1e-10, atol=1e-10)
    for a, e in zip(grads, fast.conv2d_backward(dy, cache2)):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)
    assert conv_fast.forward(x, fast.conv.weight_matrix(w, 1), cache.geometry) is None
