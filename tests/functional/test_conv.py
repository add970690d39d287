"""Properties of the fast convolution (its values are checked against the reference kernels
in test_reference.py): the exact adjoint, sizes, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from faltung.functional.conv import conv2d_backward, conv2d_forward

from .test_reference import conv_cases, conv_inputs


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_backward_is_the_adjoint_of_forward(case):
    """<conv(x), dy> = <x, conv^T(dy)>: the input gradient is the exact adjoint."""
    x, weight, _, args, rng = conv_inputs(case)
    y, cache = conv2d_forward(x, weight, None, *args)
    dy = rng.standard_normal(y.shape)
    dx, dweight, dbias = conv2d_backward(dy, cache)
    assert dbias is None
    assert dx.shape == x.shape and dweight.shape == weight.shape
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-9)
    np.testing.assert_allclose(np.sum(y * dy), np.sum(weight * dweight), rtol=1e-9)


def test_article_valid_convolution_size():
    """The article: a W x W image and an odd H x H kernel give (W - 2*floor(H/2))^2 outputs."""
    x = np.zeros((1, 1, 28, 28), np.float32)
    y, _ = conv2d_forward(x, np.zeros((3, 1, 5, 5), np.float32))
    assert y.shape == (1, 3, 28 - 2 * (5 // 2), 28 - 2 * (5 // 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype):
    x = np.ones((2, 3, 6, 6), dtype)
    w = np.ones((4, 3, 3, 3), dtype)
    y, cache = conv2d_forward(x, w, np.zeros(4, dtype), padding=1)
    dx, dw, db = conv2d_backward(np.ones_like(y), cache)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype


def test_first_layer_skips_input_gradient():
    x = np.ones((2, 1, 5, 5), np.float32)
    y, cache = conv2d_forward(x, np.ones((2, 1, 3, 3), np.float32))
    dx, dw, _ = conv2d_backward(np.ones_like(y), cache, need_input_grad=False)
    assert dx is None and dw.shape == (2, 1, 3, 3)
