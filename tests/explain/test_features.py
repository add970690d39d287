"""Feature maps, filters and the convolution sum behind one output value."""

from __future__ import annotations

import numpy as np
import pytest

from faltung.explain import activations, conv_layers, conv_sum, filters, to_uint8
from faltung.presets import article_network

from .models import colour_net, grey_net, settle_batch_norm


def test_activations_are_every_layer_output_in_order(rng):
    model = colour_net()
    settle_batch_norm(model, rng.random((8, 3, 32, 32), dtype=np.float32))
    x = rng.random((2, 3, 32, 32), dtype=np.float32)
    outputs = activations(model, x)
    assert list(outputs) == list(model.layers)
    assert outputs["conv_a"].shape == (2, 6, 32, 32) and outputs["fc"].shape == (2, 4)
    # forward folds batch norm into the convolution before it; each layer alone rounds apart
    np.testing.assert_allclose(outputs["fc"], model.eval().forward(x), rtol=1e-5, atol=1e-6)
    single = activations(model, x[1])
    assert single["avg"].shape == (6, 8, 8)
    np.testing.assert_allclose(single["avg"], outputs["avg"][1], rtol=1e-6)


def test_activations_restore_training_mode(rng):
    model = grey_net().train()
    activations(model, rng.random((1, 28, 28), dtype=np.float32))
    assert model.training and model["sigmoid"].training


def test_filters_of_the_article_network():
    model = article_network(0)
    assert conv_layers(model) == ["conv1", "conv2"]
    assert filters(model).shape == (20, 1, 5, 5)
    assert filters(model, "conv2").shape == (50, 20, 5, 5)
    weights = filters(model)
    weights[:] = 0  # a copy: the model is untouched
    assert np.any(model["conv1"].params["weight"])
    with pytest.raises(ValueError, match="not a convolution"):
        filters(model, "fc1")


@pytest.mark.parametrize(
    "layer,channel,row,col",
    [("conv_a", 0, 0, 0), ("conv_a", 5, 31, 17), ("conv_b", 4, 0, 15), ("conv_b", 1, 8, 9)],
)
def test_conv_sum_reproduces_the_feature_map(rng, layer, channel, row, col):
    """Padding, stride 2, dilation 2 and two groups: the written-out sum equals the output."""
    model = colour_net()
    settle_batch_norm(model, rng.random((8, 3, 32, 32), dtype=np.float32))
    image = rng.random((3, 32, 32), dtype=np.float32)
    explained = conv_sum(model, image, layer, channel, row, col)
    expected = activations(model, image)[layer][channel, row, col]
    assert explained.value == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    assert explained.patch.shape == explained.weight.shape
    if layer == "conv_b":
        assert explained.patch.shape == (3, 3, 3)
        assert explained.input_channels == (range(3, 6) if channel >= 3 else range(0, 3))


@pytest.mark.parametrize("layer", ["conv_a", "conv_b"])
def test_conv_sum_of_a_uint8_image_is_the_feature_map(rng, layer):
    """Pixels 0..255 are scaled to [0, 1] for the first convolution as for the others."""
    model = colour_net()
    image = (rng.random((3, 32, 32)) * 255).astype(np.uint8)
    explained = conv_sum(model, image, layer, 1, 3, 4)
    expected = activations(model, image)[layer][1, 3, 4]
    assert explained.value == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    assert explained.patch.max() <= 1


def test_conv_sum_at_a_padded_corner_sees_zeros(rng):
    model = colour_net()
    explained = conv_sum(model, rng.random((3, 32, 32), dtype=np.float32), "conv_a", 0, 0, 0)
    assert (explained.top, explained.left) == (-1, -1)
    assert np.all(explained.patch[:, 0, :] == 0) and np.all(explained.patch[:, :, 0] == 0)
    with pytest.raises(ValueError, match="no output"):
        conv_sum(model, rng.random((3, 32, 32), dtype=np.float32), "conv_a", 6, 0, 0)


def test_to_uint8_spans_the_range_and_handles_constants():
    assert to_uint8(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    assert to_uint8(np.full((2, 2), 3.0)).tolist() == [[0, 0], [0, 0]]


def test_probabilities_of_a_model_that_ends_in_softmax(rng):
    from faltung import Sequential
    from faltung.explain import occlusion, predict_probabilities
    from faltung.layers import Dense, Flatten, Softmax

    model = Sequential([("flat", Flatten()), ("fc", Dense(16, 3)), ("soft", Softmax())], seed=0)
    x = rng.random((4, 1, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(predict_probabilities(model, x), model.eval().forward(x))
    assert occlusion(model, x[0], 1, patch=2).shape == (4, 4)


def test_mistakes_are_ranked_by_confidence_and_counted_in_all():
    from faltung.explain.mistakes import rank_mistakes

    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    found = rank_mistakes(probabilities, np.array([0, 0, 0, 1]), count=2)
    assert found.index.tolist() == [1, 3] and found.predicted.tolist() == [1, 0]
    assert found.total == 3  # the third mistake is past count
