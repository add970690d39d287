"""Presets: the layer order chosen for speed computes the article's function exactly."""

from __future__ import annotations

import numpy as np
import pytest

from faltung.layers import MaxPool2D, ReLU
from faltung.model import Sequential
from faltung.presets import PRESETS, lenet_trunk


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


def test_trunk_pools_before_each_relu():
    names = [name for name, _ in lenet_trunk()]
    assert names.index("pool1") + 1 == names.index("relu1")
    assert names.index("pool2") + 1 == names.index("relu2")


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_build_and_classify_ten_digits(preset):
    model = PRESETS[preset].build(0)
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
