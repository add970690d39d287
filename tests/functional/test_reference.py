"""The article's plain kernels are the oracle: every fast kernel against them, both ways.

The reference kernels themselves are checked against the loop definitions in
``tests/reference.py`` (forward) and against numerical gradients (backward, in
``tests/layers/test_gradients.py``, which runs every layer on both kernel sets).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faltung import functional as fast
from faltung.functional import KERNEL_OPS, conv_fast, kernel_set, pool_fast, winograd
from faltung.functional import conv as fast_conv
from faltung.functional import reference as ref
from faltung.functional.layout import is_channels_last
from faltung.functional.shapes import conv_geometry, resolve_padding

from ..reference import conv2d_naive, pool2d_naive


def channels_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def close(actual, expected, tol=1e-10):
    if expected is None:
        assert actual is None
    else:
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def test_both_kernel_sets_provide_every_op():
    for name in ("fast", "reference"):
        kernels = kernel_set(name)
        for op in KERNEL_OPS:
            assert callable(getattr(kernels, f"{op}_forward"))
            assert callable(getattr(kernels, f"{op}_backward"))


# --- convolution ----------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from([0, 1, 2, (1, 0), "same", "valid"]))
    if padding == "same":
        stride = (1, 1)
    pads = resolve_padding(padding, (kh, kw), dilation, stride)
    min_h = max(dilation[0] * (kh - 1) + 1 - sum(pads[0]), 1)
    min_w = max(dilation[1] * (kw - 1) + 1 - sum(pads[1]), 1)
    h, w = draw(st.integers(min_h, min_h + 6)), draw(st.integers(min_w, min_w + 6))
    n = draw(st.integers(1, 3))
    return n, cin, cout, (kh, kw), stride, padding, dilation, groups, (h, w), draw(st.integers())


def conv_inputs(case):
    n, cin, cout, kernel, stride, padding, dilation, groups, (h, w), seed = case
    rng = np.random.default_rng(seed % 2**32)
    x = rng.standard_normal((n, cin, h, w))
    weight = rng.standard_normal((cout, cin // groups, *kernel))
    bias = rng.standard_normal(cout)
    return x, weight, bias, (stride, padding, dilation, groups), rng


@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_reference_convolution_is_the_definition(case):
    x, weight, bias, (stride, padding, dilation, groups), _ = conv_inputs(case)
    y, _ = ref.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    pads = resolve_padding(padding, weight.shape[2:], dilation, stride)
    close(y, conv2d_naive(x, weight, bias, stride, pads, dilation, groups))


@settings(max_examples=80, deadline=None)
@given(conv_cases(), st.booleans())
def test_fast_convolution_matches_the_reference(case, nhwc):
    x, weight, bias, args, rng = conv_inputs(case)
    if nhwc:
        x = channels_last(x)
    y_ref, cache_ref = ref.conv2d_forward(x, weight, bias, *args)
    y, cache = fast.conv2d_forward(x, weight, bias, *args)
    close(y, y_ref)
    backward_agrees(rng.standard_normal(y.shape), cache, cache_ref)


def backward_agrees(dy, cache, cache_ref):
    """Fast and reference convolution backward agree, with and without the input gradient."""
    for need_input_grad in (True, False):
        for got, expected in zip(
            fast.conv2d_backward(dy, cache, need_input_grad),
            ref.conv2d_backward(dy, cache_ref, need_input_grad),
        ):
            close(got, expected)


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_every_input_gradient_path_matches_the_reference(case):
    """Force the row-window input gradient, then the other one (per offset, or a correlation
    with the flipped kernel for a size-keeping convolution) on the same problem."""
    x, weight, bias, (_, padding, dilation, groups), rng = conv_inputs(case)
    y, cache = fast.conv2d_forward(x, weight, bias, 1, padding, dilation, groups)
    dy = rng.standard_normal(y.shape)
    expected = ref.conv2d_backward(
        dy, ref.conv2d_forward(x, weight, bias, 1, padding, dilation, groups)[1]
    )[0]
    with pytest.MonkeyPatch.context() as patch:
        for max_rows in (10**9, 0):  # always row windows, never row windows
            patch.setattr(conv_fast, "ROW_WINDOW_MAX_ROWS", max_rows)
            dx = fast.conv2d_backward(dy, cache)[0]
            close(dx, expected)
            assert is_channels_last(dx)  # the layout the layer before expects


@settings(max_examples=40, deadline=None)
@given(conv_cases(), st.integers(1, 3), st.integers(2, 7))
def test_chunked_convolution_matches_the_reference(case, images_per_chunk, n):
    """Large batches run in chunks (im2col gathered again in backward): forced here."""
    case = (max(n, images_per_chunk + 1), *case[1:])  # more images than one chunk holds
    x, weight, bias, args, rng = conv_inputs(case)
    y_ref, cache_ref = ref.conv2d_forward(x, weight, bias, *args)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_fast, "CHUNK_ABOVE", 0)
        patch.setattr(conv_fast, "CHUNK_ABOVE_ONE_CHANNEL", 0)
        patch.setattr(conv_fast, "blas_threads", lambda: 1)  # chunk sizes are per thread
        geo = cache_ref.geometry
        per_image = geo.out_hw[0] * geo.out_hw[1] * np.prod(geo.weight_shape[1:]) * x.itemsize
        patch.setattr(conv_fast, "CHUNK_BYTES", int(per_image) * images_per_chunk)
        y, cache = fast.conv2d_forward(x, weight, bias, *args)
        assert (cache.cols is None) == (geo.groups == 1)  # groups have their own path
        close(y, y_ref)
        backward_agrees(rng.standard_normal(y.shape), cache, cache_ref)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    "kernel,padding,dilation", [((3, 3), 1, 1), ((3, 3), 2, 2), ((4, 2), "same", 1), ((5, 5), 2, 1)]
)
def test_a_size_keeping_input_gradient_is_a_correlation_and_agrees(
    kernel, padding, dilation, chunked, monkeypatch, conv_in_chunks
):
    rng = np.random.default_rng(1)
    x = channels_last(rng.standard_normal((3, 4, 7, 6)))
    w = rng.standard_normal((5, 4, *kernel))
    calls = []
    original = conv_fast.input_grad_correlation
    monkeypatch.setattr(
        conv_fast, "input_grad_correlation", lambda *a: calls.append(a) or original(*a)
    )
    monkeypatch.setattr(conv_fast, "ROW_WINDOW_MAX_ROWS", 0)
    monkeypatch.setattr(winograd, "KERNELS", ())  # under test: the correlation, not Winograd
    if chunked:
        conv_in_chunks()
    y, cache = fast.conv2d_forward(x, w, None, 1, padding, dilation)
    assert y.shape[2:] == x.shape[2:] and (cache.cols is None) == chunked
    dy = channels_last(rng.standard_normal(y.shape))
    dx = fast.conv2d_backward(dy, cache)[0]
    assert len(calls) == 1 and is_channels_last(dx)
    close(dx, ref.conv2d_backward(dy, ref.conv2d_forward(x, w, None, 1, padding, dilation)[1])[0])


@pytest.mark.parametrize("row_windows", [True, False])
@pytest.mark.parametrize(
    "kernel,padding,dilation,cin,dtype",
    [
        ((3, 3), 1, 1, 4, np.float64),
        ((3, 3), 2, 2, 3, np.float64),
        ((4, 2), "same", 1, 2, np.float64),
        ((1, 3), "same", 1, 5, np.float64),
        ((3, 1), "same", (2, 1), 3, np.float64),
        ((3, 3), 1, 1, 4, np.float32),
    ],
)
def test_the_row_window_forward_is_taken_and_agrees(
    kernel, padding, dilation, cin, dtype, row_windows, monkeypatch, conv_in_chunks
):
    """A chunked size-keeping convolution's forward by width windows (two images per
    chunk, the last one short), or by im2col chunks, in inference and in training; the
    backward pass then gathers im2col chunks for dW, and its input gradient, a correlation,
    runs the same forward path."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, cin, 7, 6)).astype(dtype)
    w = rng.standard_normal((3, cin, *kernel)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    calls = []
    original = conv_fast.row_window_forward
    monkeypatch.setattr(conv_fast, "row_window_forward", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(conv_fast, "ROW_WINDOW_MAX_ROW_VALUES", 10**9 if row_windows else 0)
    kh, kw = kernel
    padded_h = 7 + (dilation if isinstance(dilation, int) else dilation[0]) * (kh - 1)
    per_image = padded_h * 6 * (kw * cin + kh * 3) * x.itemsize
    monkeypatch.setattr(conv_fast, "ROW_WINDOW_CHUNK_BYTES", 2 * per_image)
    conv_in_chunks()
    y_ref, cache_ref = ref.conv2d_forward(x, w, b, 1, padding, dilation)
    for need_cache in (False, True):
        y, cache = fast.conv2d_forward(x, w, b, 1, padding, dilation, need_cache=need_cache)
        assert y.dtype == dtype and is_channels_last(y)
        if dtype == np.float64:
            close(y, y_ref)
        else:
            np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    assert len(calls) == (2 if row_windows else 0)
    if dtype == np.float64:
        backward_agrees(rng.standard_normal(y.shape), cache, cache_ref)
        assert len(calls) == (3 if row_windows else 0)  # and once for the input gradient


@pytest.mark.parametrize("cin,groups,special", [(1, 1, True), (4, 2, True), (3, 1, False)])
def test_each_forward_path_is_taken_and_agrees(cin, groups, special):
    """One input channel and groups take their own forward paths; all match the reference."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, cin, 9, 7))
    w = rng.standard_normal((4, cin // groups, 3, 2))
    y, cache = fast.conv2d_forward(x, w, None, groups=groups)
    w_mat = fast_conv.weight_matrix(w, groups)
    assert (conv_fast.forward(x, w_mat, cache.geometry) is not None) == special
    close(y, ref.conv2d_forward(x, w, None, groups=groups)[0])


# --- pooling --------------------------------------------------------------------------


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h, w = draw(st.integers(kh, kh + 6)), draw(st.integers(kw, kw + 6))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w)
    # Few distinct values, so that max pooling meets ties in most windows.
    levels = draw(st.sampled_from([3, 1000]))
    return (kh, kw), stride, padding, shape, levels, draw(st.integers(0, 2**16))


def pool_input(shape, levels, seed, nhwc):
    rng = np.random.default_rng(seed)
    x = rng.integers(-levels // 2, levels // 2 + 1, shape) / levels * 4
    return (channels_last(x) if nhwc else x), rng


@settings(max_examples=60, deadline=None)
@given(pool_cases())
def test_reference_pooling_is_the_definition(case):
    kernel, stride, padding, shape, levels, seed = case
    x, _ = pool_input(shape, levels, seed, False)
    y, _ = ref.max_pool2d_forward(x, kernel, stride, padding)
    close(y, pool2d_naive(x, kernel, stride, padding, np.max, -np.inf))
    y, _ = ref.avg_pool2d_forward(x, kernel, stride, padding)
    close(y, pool2d_naive(x, kernel, stride, padding, np.mean, 0.0))
    y, _ = ref.lp_pool2d_forward(np.abs(x), 3.0, kernel, stride, padding)
    article = lambda window: np.mean(window**3) ** (1 / 3)  # noqa: E731
    close(y, pool2d_naive(np.abs(x), kernel, stride, padding, article, 0.0))


POOLS = {
    "max": lambda k, x, *a: k.max_pool2d_forward(x, *a),
    "avg": lambda k, x, *a: k.avg_pool2d_forward(x, *a),
    "lp2": lambda k, x, *a: k.lp_pool2d_forward(x, 2.0, *a),
    "lp3": lambda k, x, *a: k.lp_pool2d_forward(x, 3.0, *a),
    "lp2.5": lambda k, x, *a: k.lp_pool2d_forward(x, 2.5, *a),
    "lp1": lambda k, x, *a: k.lp_pool2d_forward(x, 1.0, *a),
    "lpinf": lambda k, x, *a: k.lp_pool2d_forward(x, np.inf, *a),
}
POOL_BACKWARD = {"max": "max_pool2d_backward", "avg": "avg_pool2d_backward"}


@settings(max_examples=60, deadline=None)
@given(pool_cases(), st.sampled_from(sorted(POOLS)), st.booleans())
def test_fast_pooling_matches_the_reference(case, kind, nhwc):
    kernel, stride, padding, shape, levels, seed = case
    x, rng = pool_input(shape, levels, seed, nhwc)
    backward = POOL_BACKWARD.get(kind, "lp_pool2d_backward")
    y_ref, cache_ref = POOLS[kind](ref, x, kernel, stride, padding)
    y, cache = POOLS[kind](fast, x, kernel, stride, padding)
    close(y, y_ref)
    dy = rng.standard_normal(y.shape)
    close(getattr(fast, backward)(dy, cache), getattr(ref, backward)(dy, cache_ref))


@pytest.mark.parametrize("chunk_bytes", [1, pool_fast.CHUNK_BYTES])
@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (3, 3, 5, 7), (1, 4, 3, 3)])
def test_separable_2x2_max_pooling_matches_the_reference_on_ties(
    rng, shape, chunk_bytes, monkeypatch
):
    """Channels-last 2x2/2 pooling takes the separable path; three levels make most windows
    tie, so a wrong tie rule at either stage sends a gradient elsewhere. Large batches run
    in chunks: ``chunk_bytes=1`` makes every image its own chunk."""
    monkeypatch.setattr(pool_fast, "CHUNK_BYTES", chunk_bytes)
    x = channels_last(rng.integers(-1, 2, shape).astype(np.float64))
    assert pool_fast.max_pool_forward(x, fast.max_pool2d_forward(x, 2)[1].geometry) is not None
    y, cache = fast.max_pool2d_forward(x, 2)
    y_ref, cache_ref = ref.max_pool2d_forward(x, 2)
    close(y, y_ref)
    dy = rng.standard_normal(y.shape)
    close(fast.max_pool2d_backward(dy, cache), ref.max_pool2d_backward(dy, cache_ref))


# --- the fully connected part ---------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 7), st.booleans(), st.integers(0, 999))
def test_dense_matches_the_reference(n, fan_in, fan_out, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, fan_in)), rng.standard_normal((fan_out, fan_in))
    b = rng.standard_normal(fan_out) if bias else None
    y, cache = fast.linear_forward(x, w, b)
    y_ref, cache_ref = ref.linear_forward(x, w, b)
    close(y, y_ref)
    dy = rng.standard_normal(y.shape)
    for got, expected in zip(fast.linear_backward(dy, cache), ref.linear_backward(dy, cache_ref)):
        close(got, expected)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["relu", "sigmoid"]),
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
    st.floats(0.1, 100),
    st.integers(0, 999),
)
def test_activations_match_the_reference(op, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(shape) * scale, 1)  # exact zeros included
    y, cache = getattr(fast, f"{op}_forward")(x)
    y_ref, cache_ref = getattr(ref, f"{op}_forward")(x)
    close(y, y_ref)
    dy = rng.standard_normal(shape)
    close(getattr(fast, f"{op}_backward")(dy, cache), getattr(ref, f"{op}_backward")(dy, cache_ref))


LAYOUTS = {
    "nchw": lambda x: x,
    "nhwc": channels_last,
    "fortran": np.asfortranarray,
    "flat": lambda x: x.reshape(-1),
    "strided": lambda x: x[:, :, ::2],  # not contiguous in any order
    "reversed": lambda x: x[::-1],  # a negative stride
}
CONTIGUOUS = {"nchw", "nhwc", "fortran", "flat"}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_memory_runs_pair_the_same_elements_or_refuse(rng, layout):
    from faltung.functional.layout import memory_runs

    x = LAYOUTS[layout](rng.standard_normal((3, 4, 5, 6)))
    y = np.empty_like(x)
    runs = memory_runs(x, y)
    if layout not in CONTIGUOUS:
        assert runs is None
        return
    values, out = runs
    assert np.shares_memory(values, x) and np.shares_memory(out, y)
    out[...] = values * 2  # written through the views, element by element
    np.testing.assert_array_equal(y, x * 2)
    assert memory_runs(x, np.empty((*x.shape, 1))) is None  # another shape


@pytest.mark.parametrize("zero_row", [7, 4096])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_relu_by_rows_of_zeros_is_max_with_zero_in_every_layout(
    rng, monkeypatch, layout, dtype, zero_row
):
    from faltung.functional import activations

    monkeypatch.setattr(activations, "ZERO_ROW", zero_row)
    monkeypatch.setattr(activations, "ZERO_ROWS_FROM", 0)
    taken = []
    spy = activations.memory_runs
    monkeypatch.setattr(activations, "memory_runs", lambda *a: taken.append(spy(*a)) or taken[-1])
    values = np.round(rng.standard_normal((3, 4, 5, 6)) * 3, 1)
    if np.issubdtype(dtype, np.floating):
        values.flat[:5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
    x = LAYOUTS[layout](values.astype(dtype))
    y, cache = fast.relu_forward(x)
    expected = np.maximum(x, 0)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(expected))  # -0.0 becomes +0.0
    np.testing.assert_array_equal(y, ref.relu_forward(x)[0])
    assert y.dtype == x.dtype and cache is y
    assert (taken[0] is not None) == (layout in CONTIGUOUS)  # the rows of zeros were used
    if x.ndim == 4 and is_channels_last(x) and x.shape[1] > 1:
        assert is_channels_last(y)


def test_relu_of_a_small_array_compares_with_the_scalar(rng, monkeypatch):
    from faltung.functional import activations

    monkeypatch.setattr(activations, "memory_runs", lambda *a: pytest.fail("rows set up"))
    x = rng.standard_normal((5, 500)).astype(np.float32)  # a batch-5 dense layer's output
    np.testing.assert_array_equal(fast.relu_forward(x)[0], np.maximum(x, 0))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(2, 10),
    st.floats(0.1, 200),
    st.sampled_from([0.0, 0.1]),
    st.booleans(),
    st.integers(0, 999),
)
def test_softmax_cross_entropy_matches_the_reference(n, k, scale, smoothing, one_hot, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)) * scale
    labels = rng.integers(0, k, n)
    targets = np.eye(k)[labels] if one_hot else labels
    loss, cache = fast.softmax_cross_entropy_forward(logits, targets, smoothing)
    loss_ref, cache_ref = ref.softmax_cross_entropy_forward(logits, targets, smoothing)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    close(
        fast.softmax_cross_entropy_backward(0.5, cache),
        ref.softmax_cross_entropy_backward(0.5, cache_ref),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_kernels_keep_the_dtype(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    y, cache = ref.conv2d_forward(x, w, np.zeros(4, dtype), padding=1)
    dx, dw, db = ref.conv2d_backward(np.ones_like(y), cache)
    pooled, pool_cache = ref.lp_pool2d_forward(y, 2.0, 2)
    dpool = ref.lp_pool2d_backward(np.ones_like(pooled), pool_cache)
    s, _ = ref.sigmoid_forward(pooled)
    # float64 one-hot targets do not widen float32 logits' gradient
    _, loss_cache = ref.softmax_cross_entropy_forward(s.reshape(2, -1), np.eye(s[0].size)[[0, 3]])
    dlogits = ref.softmax_cross_entropy_backward(1.0, loss_cache)
    assert {a.dtype for a in (y, dx, dw, db, pooled, dpool, s, dlogits)} == {np.dtype(dtype)}


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (2, 1, 0)])
@pytest.mark.parametrize("nhwc", [False, True])
def test_max_pooling_without_a_cache_gives_the_same_maxima(rng, kernel, stride, padding, nhwc):
    """Inference (``need_cache=False``) skips the winners, on every path, not the values."""
    x = rng.integers(-2, 3, (3, 4, 7, 6)).astype(np.float32)
    if nhwc:
        x = channels_last(x)
    y, cache = fast.max_pool2d_forward(x, kernel, stride, padding, need_cache=False)
    assert cache is None
    assert ref.max_pool2d_forward(x, kernel, stride, padding, need_cache=False)[1] is None
    np.testing.assert_array_equal(y, ref.max_pool2d_forward(x, kernel, stride, padding)[0])


@pytest.mark.parametrize("cin", [1, 3])
def test_convolution_without_a_cache_chunks_any_batch_and_agrees(rng, cin, monkeypatch):
    """Inference (``need_cache=False``) runs every batch larger than a chunk in chunks."""
    monkeypatch.setattr(conv_fast, "CHUNK_BYTES", 1)  # one image per chunk
    x = channels_last(rng.standard_normal((5, cin, 9, 8)))
    w, b = rng.standard_normal((4, cin, 3, 3)), rng.standard_normal(4)
    y, cache = fast.conv2d_forward(x, w, b, 1, 1, need_cache=False)
    assert cache is None and ref.conv2d_forward(x, w, b, 1, 1, need_cache=False)[1] is None
    close(y, ref.conv2d_forward(x, w, b, 1, 1)[0])


def test_chunk_sizes_are_per_blas_thread(monkeypatch):
    """A product on one BLAS thread (a shard of a split batch) chunks at half the size
    that two threads do: each thread works from its own core's cache."""
    geo = conv_geometry((64, 20, 12, 12), (50, 20, 5, 5))  # 128 KB of im2col per image
    per_image = 8 * 8 * 5 * 5 * 20 * 4
    monkeypatch.setattr(conv_fast, "CHUNK_ABOVE", 40 * per_image)
    monkeypatch.setattr(conv_fast, "CHUNK_BYTES", 8 * per_image)
    monkeypatch.setattr(conv_fast, "CHUNK_ABOVE_ONE_CHANNEL", 10**12)  # not for 20 channels
    monkeypatch.setattr(conv_fast, "blas_threads", lambda: 2)
    assert conv_fast.images_per_chunk(geo, 4) == 64  # 64 images <= 2 * 40: kept whole
    assert conv_fast.images_per_chunk(geo, 4, need_cache=False) == 16
    monkeypatch.setattr(conv_fast, "blas_threads", lambda: 1)
    assert conv_fast.images_per_chunk(geo, 4) == 8
    assert conv_fast.images_per_chunk(geo, 4, need_cache=False) == 8


def test_one_channel_is_kept_whole_only_up_to_its_own_size_on_one_thread(monkeypatch):
    """A one-channel matrix is cheap to gather again: on one BLAS thread it is kept whole up
    to CHUNK_ABOVE_ONE_CHANNEL only; on more threads it follows CHUNK_ABOVE."""
    geo = conv_geometry((64, 1, 28, 28), (20, 1, 5, 5))
    per_image = 24 * 24 * 25 * 4
    monkeypatch.setattr(conv_fast, "CHUNK_ABOVE", 40 * per_image)
    monkeypatch.setattr(conv_fast, "CHUNK_ABOVE_ONE_CHANNEL", 10 * per_image)
    monkeypatch.setattr(conv_fast, "CHUNK_BYTES", 8 * per_image)
    monkeypatch.setattr(conv_fast, "blas_threads", lambda: 1)
    assert conv_fast.images_per_chunk(geo, 4) == 8  # 64 > 10: in chunks
    assert conv_fast.images_per_chunk(conv_geometry((10, 1, 28, 28), (20, 1, 5, 5)), 4) == 10
    monkeypatch.setattr(conv_fast, "blas_threads", lambda: 2)
    assert conv_fast.images_per_chunk(geo, 4) == 64  # 64 <= 2 * 40: kept whole


def test_a_chunked_convolution_keeps_the_dtype_of_an_unchunked_one(rng, conv_in_chunks):
    """float32 images into a float64 layer give float64, however the batch is split."""
    x = channels_last(rng.standard_normal((4, 3, 6, 6)).astype(np.float32))
    w = rng.standard_normal((2, 3, 3, 3))
    expected = fast.conv2d_forward(x, w)[0].dtype
    conv_in_chunks()
    y, cache = fast.conv2d_forward(x, w)
    assert y.dtype == expected == np.float64
    dx, dw, _ = fast.conv2d_backward(np.ones_like(y), cache)
    assert dx.dtype == dw.dtype == np.float64
