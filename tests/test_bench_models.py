"""The benchmark's PyTorch networks are the presets: the same parameters, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
from bench.networks import ORDERS, numpy_network

from faltung.presets import PRESETS

torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("bench.torch_models")


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("order", ORDERS)
def test_the_benchmarked_torch_network_has_the_presets_parameters(preset, order):
    if preset == "resnet" and order != ORDERS[0]:
        pytest.skip("the resnet has no pooling: its two orders are one network")
    ours = numpy_network(preset, order)
    theirs = torch_models.build(preset, threads=1, order=order)
    our_shapes = sorted(p.value.shape for p in ours.parameters())
    their_shapes = sorted(tuple(p.shape) for p in theirs.parameters())
    assert our_shapes == their_shapes
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert tuple(theirs.eval()(torch.from_numpy(x)).shape) == ours.eval()(x).shape
