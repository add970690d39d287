"""Presets: the layer order chosen for speed computes the article's function exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from faltung.datasets import load_dataset
from faltung.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from faltung.losses import SoftmaxCrossEntropy
from faltung.model import Sequential
from faltung.optim import SGD
from faltung.presets import PRESETS
from faltung.train import Trainer


def _pool_relu_pair(first: str) -> Sequential:
    layers = [("pool", MaxPool2D(2, 2)), ("relu", ReLU())]
    return Sequential(layers if first == "pool" else layers[::-1], seed=0)


def _written_order(model: Sequential, x: np.ndarray) -> np.ndarray:
    """The model's output with every layer run in the order written (no reordering)."""
    *_, (_, y) = model.forward_each(x)
    return y


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_relu_after_pooling_equals_relu_before_it_with_ties(layout):
    """ReLU is monotone, so max pooling and ReLU commute, and so do their gradients: each
    order run as written, which is what lets the model run a ReLU after its pooling.

    The input is built to hit every tie: windows of equal positive values, all-negative
    windows, windows with exact zeros, and windows where only one value is positive.
    """
    rng = np.random.default_rng(0)
    x = rng.choice(np.array([-2.0, -1.0, 0.0, 1.0, 2.0], np.float32), size=(4, 3, 8, 6))
    x[0, 0, :2, :2] = 1.0  # a positive four-way tie
    x[0, 1, :2, :2] = -1.0  # all negative
    x[0, 2, :2, :2] = 0.0  # all zero
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    dy = rng.standard_normal((4, 3, 4, 3)).astype(np.float32)
    results = {}
    for first in ("relu", "pool"):
        model = _pool_relu_pair(first)
        y = _written_order(model, x)  # each layer as written, not the model's own order
        results[first] = (y, model.backward(dy))
    np.testing.assert_array_equal(results["pool"][0], results["relu"][0])
    np.testing.assert_array_equal(results["pool"][1], results["relu"][1])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_computes_the_articles_layer_order(preset):
    """Each preset equals, outputs and gradients, the same weights in the article's order:
    every ReLU directly after its convolution, before the pooling."""
    model = PRESETS[preset].build(0)
    names = list(model.layers)
    article_order = list(names)
    for name in names:
        if isinstance(model[name], ReLU) and isinstance(
            model[names[names.index(name) - 1]], MaxPool2D
        ):
            i = article_order.index(name)
            article_order[i - 1], article_order[i] = article_order[i], article_order[i - 1]
    other = Sequential([(name, copy.deepcopy(model[name])) for name in article_order])
    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    for network in (model, other):
        network.eval(keep_cache=True)  # dropout off: the same function, with gradients
    np.testing.assert_array_equal(model.forward(x), _written_order(other, x))
    dy = np.random.default_rng(2).standard_normal((3, 10)).astype(np.float32)
    model.backward(dy.copy()), other.backward(dy.copy())
    for p, q in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=p.name)


def test_article_preset_trains_alike_on_the_reference_kernels(mnist_dir):
    """One epoch of the article's run (10,000 images, batch 5, SGD with L2) on the plain
    kernels of the article's way ends on the same loss as on the fast kernels."""
    data = load_dataset("mnist", mnist_dir)
    index = np.sort(np.random.default_rng(0).choice(len(data.train_images), 10_000, False))
    x, y = data.train_images[index], data.train_labels[index]
    losses = {}
    # One BLAS thread: batch-5 products are too small to share, and on a busy machine a
    # second thread only waits for a core.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        for kernels in ("fast", "reference"):
            model = PRESETS["article"].build(0).use_kernels(kernels)
            optimizer = SGD(model.parameters(), lr=0.005, weight_decay=1e-4)
            loss = SoftmaxCrossEntropy(kernels=kernels)
            trainer = Trainer(model, loss, optimizer, (x, y), epochs=1, batch_size=5, seed=0)
            losses[kernels] = trainer.fit().last["loss"]
    assert losses["fast"] < 1.0  # it learned something: the comparison is not vacuous
    np.testing.assert_allclose(losses["reference"], losses["fast"], rtol=1e-5)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_build_and_classify_ten_digits(preset):
    model = PRESETS[preset].build(0)
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def _textbook(kernels: str) -> Sequential:
    """LeNet as the tutorials write it: conv -> ReLU -> pool, twice."""
    layers = [
        ("conv1", Conv2D(1, 6, 5)), ("relu1", ReLU()), ("pool1", MaxPool2D(2)),
        ("conv2", Conv2D(6, 8, 5)), ("relu2", ReLU()), ("pool2", MaxPool2D(2)),
        ("flatten", Flatten()), ("fc", Dense(8 * 4 * 4, 10)),
    ]  # fmt: skip
    return Sequential(layers, seed=0, kernels=kernels)


def test_the_fast_kernels_pool_before_a_relu_and_the_reference_runs_what_is_written():
    fast, plain = _textbook("fast"), _textbook("reference")
    assert [type(layer).__name__ for layer in fast.run_order()][:3] == [
        "Conv2D", "MaxPool2D", "ReLU"
    ]  # fmt: skip
    assert list(plain.run_order()) == list(plain.layers.values())


@pytest.mark.parametrize("chunked", [False, True])
def test_textbook_order_on_the_fast_kernels_matches_the_reference(chunked, conv_in_chunks):
    """The reordered fast path against the reference kernels running the written order,
    outputs and every gradient, with the convolutions' large-batch chunks or without."""
    if chunked:
        conv_in_chunks()
    batch = 7
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 1, 28, 28))
    dy = rng.standard_normal((batch, 10))
    grads = {}
    for kernels in ("fast", "reference"):
        model = _textbook(kernels).astype(np.float64)
        y = model.forward(x)
        model.backward(dy)
        grads[kernels] = y, {p.name: p.grad for p in model.parameters()}
    np.testing.assert_allclose(grads["fast"][0], grads["reference"][0], rtol=1e-10, atol=1e-12)
    for name, grad in grads["reference"][1].items():
        np.testing.assert_allclose(grads["fast"][1][name], grad, rtol=1e-9, atol=1e-12)


def test_backward_follows_the_order_the_forward_pass_ran():
    """forward (reordered), forward_each and layers run by hand (both as written) each
    give the same output and gradients through ``backward``."""
    x = np.random.default_rng(4).standard_normal((3, 1, 28, 28)).astype(np.float32)
    dy = np.random.default_rng(5).standard_normal((3, 10)).astype(np.float32)
    results = []
    for run in ("forward", "forward_each", "by hand"):
        model = _textbook("fast")
        model.forward(x)
        model.backward(dy)  # a finished step before, in the reordered order
        if run == "forward":
            y = model.forward(x)
        elif run == "forward_each":
            *_, (_, y) = model.forward_each(x)
        else:
            y = x
            for layer in model.layers.values():
                y = layer.forward(y)
        model.backward(dy)
        results.append((y, [p.grad.copy() for p in model.parameters()]))
    for y, grads in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        for got, expected in zip(grads, results[0][1]):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(1, 12, 12), (3, 6, 40), (1, 15, 28)])
def test_lenet_on_images_too_small_says_the_smallest_size(shape):
    for preset in ("article", "lenet"):
        with pytest.raises(ValueError, match="need images of at least 16x16; these are"):
            PRESETS[preset].build(0, shape, 10)
    PRESETS["lenet"].build(0, (1, 16, 16), 10)  # the smallest: 50 maps of 1x1
