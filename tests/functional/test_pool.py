"""The article's Lp formula and its limits, and the tie rules of max pooling (values against
the reference kernels are in test_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faltung.functional import pool as F

from ..reference import pool2d_naive


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h = draw(st.integers(kh, kh + 6))
    w = draw(st.integers(kw, kw + 6))
    return (kh, kw), stride, padding, (draw(st.integers(1, 3)), 2, h, w), draw(st.integers(0, 999))


@settings(max_examples=30, deadline=None)
@given(pool_cases(), st.sampled_from([2.0, 3.0, 2.5]))
def test_lp_matches_the_article_formula(case, p):
    kernel, stride, padding, shape, seed = case
    x = np.abs(np.random.default_rng(seed).standard_normal(shape)) + 0.1
    y, _ = F.lp_pool2d_forward(x, p, kernel, stride, padding)

    def article(window):  # u = ((1/H^2) * sum z^P)^(1/P)
        return np.mean(window**p) ** (1 / p)

    np.testing.assert_allclose(y, pool2d_naive(x, kernel, stride, padding, article, 0.0), 1e-10)


@pytest.mark.parametrize("stride,padding", [(2, 0), (1, 0), (2, 1), (3, 1)])
def test_lp_limits_are_exactly_avg_and_max(rng, stride, padding):
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    avg, _ = F.avg_pool2d_forward(x, 3, stride, padding)
    lp1, _ = F.lp_pool2d_forward(x, 1, 3, stride, padding)
    np.testing.assert_array_equal(lp1, avg)
    mx, _ = F.max_pool2d_forward(x, 3, stride, padding)
    lpinf, _ = F.lp_pool2d_forward(x, np.inf, 3, stride, padding)
    np.testing.assert_array_equal(lpinf, mx)
    # And large finite p approaches the max of non-negative inputs.
    big, _ = F.lp_pool2d_forward(np.abs(x).astype(np.float64), 200.0, 3, stride, 0)
    mx_abs, _ = F.max_pool2d_forward(np.abs(x).astype(np.float64), 3, stride, 0)
    np.testing.assert_allclose(big, mx_abs, rtol=0.02)


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties():
    x = np.zeros((1, 1, 2, 2))
    y, cache = F.max_pool2d_forward(x, 2)
    dx = F.max_pool2d_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx, [[[[1, 0], [0, 0]]]])


def test_tiling_pool_crops_the_remainder_like_pytorch(rng):
    x = rng.standard_normal((1, 1, 5, 5))
    y, cache = F.max_pool2d_forward(x, 2)
    assert y.shape == (1, 1, 2, 2)
    dx = F.max_pool2d_backward(np.ones_like(y), cache)
    assert dx.shape == x.shape and dx[..., 4, :].sum() == 0 and dx[..., :, 4].sum() == 0


def test_overlapping_max_pool_accumulates_shared_winners():
    # One large value sits in four overlapping 2x2 windows with stride 1.
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    y, cache = F.max_pool2d_forward(x, 2, 1)
    assert np.all(y == 5.0)
    dx = F.max_pool2d_backward(np.ones_like(y), cache)
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0
