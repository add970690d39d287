"""Presets: the layer order chosen for speed computes the article's function exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from faltung.datasets import load_dataset
from faltung.layers import MaxPool2D, ReLU
from faltung.losses import SoftmaxCrossEntropy
from faltung.model import Sequential
from faltung.optim import SGD
from faltung.presets import PRESETS
from faltung.train import Trainer


def _pool_relu_pair(first: str) -> Sequential:
    layers = [("pool", MaxPool2D(2, 2)), ("relu", ReLU())]
    return Sequential(layers if first == "pool" else layers[::-1], seed=0)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_relu_after_pooling_equals_relu_before_it_with_ties(layout):
    """ReLU is monotone, so max pooling and ReLU commute, and so do their gradients.

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
        y = model.forward(x)
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
    np.testing.assert_array_equal(model.forward(x), other.forward(x))
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
