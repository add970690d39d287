"""The fast batch norm against the plain formulas of ``norm``, in every memory layout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from faltung.functional import norm, norm_fast
from faltung.functional.layout import empty_nchw


def _layouts(rng, shape, dtype):
    """The same values as NCHW memory, channels-last memory, and a strided slice."""
    values = rng.standard_normal(shape) * 3 + 1.5
    first = values.astype(dtype)
    if len(shape) == 2:
        return {"rows": first, "strided": np.repeat(first, 2, axis=1)[:, ::2]}
    last = empty_nchw(shape, dtype)
    last[...] = values
    wide = np.zeros(shape[:3] + (2 * shape[3],), dtype)
    wide[..., ::2] = values
    return {"channels-first": first, "channels-last": last, "strided": wide[..., ::2]}


def gradients_agree(got_grads, want_grads, name: str) -> None:
    """(dx, dgamma, dbeta) of the two kernels agree in float64; None where there is none."""
    for got, want in zip(got_grads, want_grads, strict=True):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11, err_msg=name)


SHAPES = [(6, 3, 5, 4), (4, 1, 3, 3), (9, 5), (3, 2, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_fast_batch_norm_is_the_plain_formula_in_every_layout(rng, shape, affine):
    channels = shape[1]
    gamma = rng.random(channels) + 0.5 if affine else None
    beta = rng.standard_normal(channels) if affine else None
    # dy in x's layout (as the next layer returns it) and in every other one.
    layouts, dy_layouts = _layouts(rng, shape, np.float64), _layouts(rng, shape, np.float64)
    for (name, x), (dy_name, dy) in itertools.product(layouts.items(), dy_layouts.items()):
        name = f"x {name}, dy {dy_name}"
        y_ref, ref_cache = norm.batch_norm_forward(x, gamma, beta, 1e-5)
        y, cache = norm_fast.batch_norm_forward(x, gamma, beta, 1e-5)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(cache.mean, ref_cache.mean, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(cache.var, ref_cache.var, rtol=1e-12, err_msg=name)
        gradients_agree(
            norm_fast.batch_norm_backward(dy, cache), norm.batch_norm_backward(dy, ref_cache), name
        )


def test_fast_batch_norm_keeps_the_input_layout_and_dtype(rng):
    x = _layouts(rng, (4, 3, 5, 5), np.float32)["channels-last"]
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, cache = norm_fast.batch_norm_forward(x, gamma, beta, 1e-5)
    assert y.dtype == np.float32 and y.strides == x.strides
    dx, dgamma, dbeta = norm_fast.batch_norm_backward(np.ones_like(x), cache)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == np.float32
    assert dx.strides == x.strides


def test_fast_batch_norm_in_chunks_matches_one_chunk(rng, monkeypatch):
    x = rng.standard_normal((7, 4, 6, 6)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = rng.random(4).astype(np.float32), rng.random(4).astype(np.float32)
    mean, var = rng.standard_normal(4).astype(np.float32), rng.random(4).astype(np.float32) + 0.5
    train_whole = norm_fast.batch_norm_forward(x, gamma, beta, 1e-5)
    eval_whole = norm_fast.batch_norm_inference_forward(x, mean, var, gamma, beta, 1e-5)
    # Both backward passes before the patch: chunks are chosen when each pass runs.
    whole = [
        (train_whole[0], norm_fast.batch_norm_backward(dy, train_whole[1])),
        (eval_whole[0], norm_fast.batch_norm_inference_backward(dy, eval_whole[1])),
    ]
    monkeypatch.setattr(norm_fast, "CHUNK_BYTES", 2 * 4 * 6 * 6 * 4)  # two images a chunk
    train_chunked = norm_fast.batch_norm_forward(x, gamma, beta, 1e-5)
    eval_chunked = norm_fast.batch_norm_inference_forward(x, mean, var, gamma, beta, 1e-5)
    assert len(train_chunked[1].layout.chunks(4)) == 4  # the last one of a single image
    chunked = [
        (train_chunked[0], norm_fast.batch_norm_backward(dy, train_chunked[1])),
        (eval_chunked[0], norm_fast.batch_norm_inference_backward(dy, eval_chunked[1])),
    ]
    for (y, grads), (y_whole, grads_whole) in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(y, y_whole, rtol=1e-6, atol=1e-6)
        for got, want in zip(grads, grads_whole, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (0, 3)])
def test_fast_eval_mode_batch_norm_takes_an_empty_batch_as_the_plain_one_does(shape):
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    x = np.zeros(shape, np.float32)
    y, cache = norm_fast.batch_norm_inference_forward(x, mean, var, gamma, beta, 1e-5)
    dx, dgamma, dbeta = norm_fast.batch_norm_inference_backward(y, cache)
    assert y.shape == dx.shape == shape and y.dtype == np.float32
    assert not dgamma.any() and not dbeta.any()


def test_float32_statistics_are_as_accurate_as_float64_allows(rng):
    # Values far from zero: the centred second pass keeps the variance's precision.
    x = (rng.standard_normal((64, 8, 12, 12)) * 0.01 + 100).astype(np.float32)
    y, cache = norm_fast.batch_norm_forward(x, None, None, 1e-5)
    y64, cache64 = norm.batch_norm_forward(x.astype(np.float64), None, None, 1e-5)
    np.testing.assert_allclose(cache.var, cache64.var, rtol=1e-3)
    np.testing.assert_allclose(y, y64, atol=2e-3)
    # Eval mode with these statistics: x - mean is exact in float32, so y is as well.
    mean, var = cache.mean, cache.var
    y, _ = norm_fast.batch_norm_inference_forward(x, mean, var, None, None, 1e-5)
    y64, _ = norm.batch_norm_inference_forward(x.astype(np.float64), mean, var, None, None, 1e-5)
    np.testing.assert_allclose(y, y64, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_fast_eval_mode_batch_norm_is_the_plain_formula_in_every_layout(rng, shape, affine):
    channels = shape[1]
    mean, var = rng.standard_normal(channels), rng.random(channels) + 0.5
    gamma = rng.random(channels) + 0.5 if affine else None
    beta = rng.standard_normal(channels) if affine else None
    # dy in x's layout (as the next layer returns it) and in every other one.
    layouts, dy_layouts = _layouts(rng, shape, np.float64), _layouts(rng, shape, np.float64)
    for (name, x), (dy_name, dy) in itertools.product(layouts.items(), dy_layouts.items()):
        name = f"x {name}, dy {dy_name}"
        y_ref, ref_cache = norm.batch_norm_inference_forward(x, mean, var, gamma, beta, 1e-5)
        y, cache = norm_fast.batch_norm_inference_forward(x, mean, var, gamma, beta, 1e-5)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12, err_msg=name)
        gradients_agree(
            norm_fast.batch_norm_inference_backward(dy, cache),
            norm.batch_norm_inference_backward(dy, ref_cache),
            name,
        )


def test_fast_batch_norm_promotes_dtypes_as_the_plain_formula_does(rng):
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    gamma, beta = rng.random(3) + 0.5, rng.random(3)  # float64 parameters
    stats = (np.zeros(3), np.ones(3))
    pairs = [
        (norm.batch_norm_forward, norm_fast.batch_norm_forward, ()),
        (norm.batch_norm_inference_forward, norm_fast.batch_norm_inference_forward, stats),
    ]
    backward = {
        norm.batch_norm_forward: norm.batch_norm_backward,
        norm_fast.batch_norm_forward: norm_fast.batch_norm_backward,
        norm.batch_norm_inference_forward: norm.batch_norm_inference_backward,
        norm_fast.batch_norm_inference_forward: norm_fast.batch_norm_inference_backward,
    }
    for plain, fast, extra in pairs:
        outputs = []
        for forward in (plain, fast):
            y, cache = forward(x, *extra, gamma, beta, 1e-5)
            grads = backward[forward](np.ones(y.shape, y.dtype), cache)
            outputs.append([y.dtype] + [g.dtype for g in grads])
        assert outputs[0] == outputs[1]
