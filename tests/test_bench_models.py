"""The benchmark's PyTorch networks are ours: the same parameters, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
from bench.networks import EXAMPLE, NETWORKS, numpy_network, orders

torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("bench.torch_models")


@pytest.mark.parametrize(
    ("network", "order"), [(network, order) for network in NETWORKS for order in orders(network)]
)
def test_the_benchmarked_torch_network_has_our_parameters(network, order):
    ours = numpy_network(network, order)
    theirs = torch_models.build(network, threads=1, order=order)
    our_shapes = sorted(p.value.shape for p in ours.parameters())
    their_shapes = sorted(tuple(p.shape) for p in theirs.parameters())
    assert our_shapes == their_shapes
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert tuple(theirs.eval()(torch.from_numpy(x)).shape) == ours.eval()(x).shape


def test_the_example_computes_what_pytorchs_example_computes():
    """The same weights give the same logits, and the same gradients (dropout off)."""
    ours = numpy_network(EXAMPLE).astype(np.float64).eval(keep_cache=True)
    theirs = torch_models.build(EXAMPLE, threads=1).double().eval()
    with torch.no_grad():
        for (_, ours_layer), theirs_layer in zip(ours.layers.items(), theirs, strict=True):
            for key, value in ours_layer.params.items():
                getattr(theirs_layer, key).copy_(torch.from_numpy(value))
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    logits = theirs(torch.from_numpy(x))
    np.testing.assert_allclose(ours.forward(x), logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = np.random.default_rng(1).standard_normal(logits.shape)
    logits.backward(torch.from_numpy(dy))
    ours.backward(dy)
    for (name, ours_layer), theirs_layer in zip(ours.layers.items(), theirs, strict=True):
        for key, grad in ours_layer.grads.items():
            expected = getattr(theirs_layer, key).grad.numpy()
            np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_network_of_one_layer_order_refuses_the_other():
    with pytest.raises(ValueError, match="one layer order"):
        numpy_network(EXAMPLE, "textbook")
