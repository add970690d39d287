"""Attributions: gradients against central differences, completeness, occlusion oracle."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from faltung.explain import (
    class_gradients,
    eval_backprop,
    gradient_x_input,
    integrated_gradients,
    occlusion,
    saliency,
)

from .models import colour_net, grey_net, settle_batch_norm, trained_grey_net


@pytest.fixture(scope="module")
def trained():
    return trained_grey_net()


def numerical_gradient(model, image, target, indices, eps=1e-5):
    """Central differences of the class score in float64 at the given pixels, one batch."""
    model = copy.deepcopy(model).astype(np.float64).eval()
    x = image.astype(np.float64)
    copies = np.repeat(x[None], 2 * len(indices), axis=0)
    for k, index in enumerate(indices):
        copies[(2 * k, *index)] += eps
        copies[(2 * k + 1, *index)] -= eps
    scores = model.forward(copies)[:, target]
    return (scores[0::2] - scores[1::2]) / (2 * eps)


@pytest.mark.parametrize("make", [grey_net, colour_net])
def test_saliency_is_the_gradient_of_the_class_score_in_eval_mode(make, rng):
    model = make()
    shape = (1, 28, 28) if make is grey_net else (3, 32, 32)
    settle_batch_norm(model, rng.random((8, *shape), dtype=np.float32))
    image = rng.random(shape).astype(np.float64)
    model64 = copy.deepcopy(model).astype(np.float64)
    got = saliency(model64, image, target=3)
    # 300 pixels drawn at random, plus the corners (padding) and the centre.
    picks = {tuple(int(v) for v in rng.integers(0, shape)) for _ in range(300)}
    picks |= {(0, 0, 0), (shape[0] - 1, shape[1] - 1, shape[2] - 1), (0, shape[1] // 2, 14)}
    indices = sorted(picks)
    want = numerical_gradient(model, image, 3, indices)
    np.testing.assert_allclose([got[i] for i in indices], want, rtol=1e-4, atol=1e-7)


def test_eval_backprop_leaves_the_model_as_it_was(rng):
    model = colour_net()
    settle_batch_norm(model, rng.random((8, 3, 32, 32), dtype=np.float32))
    model.train()
    x = rng.random((4, 3, 32, 32), dtype=np.float32)
    model.forward(x)
    model.backward(np.ones((4, 4), np.float32))
    grads = {n: dict(layer.grads) for n, layer in model.layers.items()}
    state = model.state_dict()
    dropout_state = model["drop"].rng.bit_generator.state
    saliency(model, x[0], target=1)
    assert model.training and all(layer.training for layer in model.layers.values())
    assert model["conv_a"].needs_input_grad is False
    assert not any(layer.keep_cache for layer in model.layers.values())
    for name, layer in model.layers.items():
        assert layer.grads.keys() == grads[name].keys()
        assert all(layer.grads[k] is grads[name][k] for k in grads[name])
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[key])
    assert model["drop"].rng.bit_generator.state == dropout_state


def test_eval_backprop_uses_eval_maths(rng):
    model = colour_net()
    settle_batch_norm(model, rng.random((8, 3, 32, 32), dtype=np.float32))
    x = rng.random((5, 3, 32, 32), dtype=np.float32)
    expected = model.eval().forward(x)
    _, scores = class_gradients(model.train(), x, np.zeros(5, np.int64))
    # Float32 rounding apart (eval-mode forward folds batch norm into the convolution);
    # training-mode statistics would differ by orders of magnitude more.
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    with eval_backprop(model):
        assert not model.training


def test_batched_saliency_matches_one_at_a_time(rng):
    model = colour_net()
    x = rng.random((3, 3, 32, 32), dtype=np.float32)
    targets = np.array([0, 2, 3])
    batch = saliency(model, x, targets)
    for i in range(3):
        np.testing.assert_allclose(batch[i], saliency(model, x[i], int(targets[i])), atol=1e-6)


def test_gradient_x_input_is_the_elementwise_product(rng):
    model = grey_net()
    x = rng.random((1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(gradient_x_input(model, x, 4), saliency(model, x, 4) * x)


def test_integrated_gradients_completeness_on_a_trained_model(trained):
    """Sum of attributions = score(x) - score(baseline), within 1% at 64 steps."""
    model, images, labels = trained
    assert np.mean(model.predict(images) == labels) > 0.8  # it did learn
    checked = 0
    for image, label in zip(images[:8], labels[:8]):
        ig = integrated_gradients(model, image, target=int(label), steps=64)
        scores = model.forward(np.stack([image, np.zeros_like(image)]))[:, label]
        difference = float(scores[0] - scores[1])
        assert abs(ig.sum(dtype=np.float64) - difference) <= 0.01 * abs(difference)
        checked += 1
    assert checked == 8


def test_integrated_gradients_with_a_grey_baseline_on_a_colour_model(rng):
    model = colour_net()
    settle_batch_norm(model, rng.random((8, 3, 32, 32), dtype=np.float32))
    image = rng.random((3, 32, 32), dtype=np.float32)
    ig = integrated_gradients(model, image, target=1, baseline=0.5, steps=64)
    scores = model.forward(np.stack([image, np.full_like(image, 0.5)]))[:, 1]
    difference = float(scores[0] - scores[1])
    assert ig.shape == image.shape
    assert abs(ig.sum(dtype=np.float64) - difference) <= 0.01 * abs(difference) + 1e-4


def occlusion_oracle(model, image, target, patch, stride, fill):
    """One occluded copy at a time, pixel-by-pixel bookkeeping: slow and obvious."""
    _, h, w = image.shape
    reference = model.predict_proba(image[None])[0, target]
    total, count = np.zeros((h, w)), np.zeros((h, w))
    tops = sorted(set(range(0, h - patch + 1, stride)) | {h - patch})
    lefts = sorted(set(range(0, w - patch + 1, stride)) | {w - patch})
    for top in tops:
        for left in lefts:
            copy_ = image.copy()
            copy_[:, top : top + patch, left : left + patch] = fill
            drop = reference - model.predict_proba(copy_[None])[0, target]
            total[top : top + patch, left : left + patch] += drop
            count[top : top + patch, left : left + patch] += 1
    return total / count


@pytest.mark.parametrize("patch,stride", [(7, 3), (5, 5), (4, 2)])
def test_occlusion_matches_a_loop_oracle(trained, patch, stride):
    model, images, labels = trained
    image = images[0]
    got = occlusion(model, image, int(labels[0]), patch=patch, stride=stride, batch_size=37)
    want = occlusion_oracle(model, image, int(labels[0]), patch, stride, 0.0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_occlusion_finds_the_informative_bar(trained):
    """Synthetic class k is a bright bar at rows 2k+4..2k+5: covering it must hurt most."""
    model, images, labels = trained
    k = int(labels[0])
    heat = occlusion(model, images[0], k, patch=4, stride=1)
    rows = heat.mean(axis=1)
    assert 2 * k + 1 <= int(rows.argmax()) <= 2 * k + 8


def test_occlusion_on_a_colour_image(rng):
    model = colour_net()
    image = rng.random((3, 32, 32), dtype=np.float32)
    heat = occlusion(model, image, patch=8)
    assert heat.shape == (32, 32) and np.all(np.isfinite(heat))


def test_bad_arguments_are_refused(rng):
    model = grey_net()
    with pytest.raises(ValueError, match="image"):
        integrated_gradients(model, rng.random((2, 1, 28, 28)))
    with pytest.raises(ValueError, match="patch"):
        occlusion(model, rng.random((1, 28, 28)), patch=40)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(model, rng.random((1, 28, 28)), steps=0)


def test_behind_its_standardisation_a_model_is_explained_in_pixels(rng):
    from faltung.datasets import Preprocessing
    from faltung.explain.pixels import in_pixels

    model = colour_net()
    settle_batch_norm(model, rng.random((8, 3, 32, 32), dtype=np.float32))
    model = copy.deepcopy(model).astype(np.float64).eval()
    mean, std = [0.5, 0.4, 0.3], [0.25, 0.5, 2.0]
    assert in_pixels(model, Preprocessing.identity(3)) is model
    pixels = in_pixels(model, Preprocessing(tuple(mean), tuple(std)))
    image = rng.random((3, 32, 32))
    standardised = (image - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))
    np.testing.assert_allclose(pixels(image[None]), model(standardised[None]), rtol=1e-12)
    got = saliency(pixels, image, target=2)
    indices = sorted({tuple(int(v) for v in rng.integers(0, (3, 32, 32))) for _ in range(60)})
    want = numerical_gradient(pixels, image, 2, indices)
    np.testing.assert_allclose([got[i] for i in indices], want, rtol=1e-4, atol=1e-7)
    ig = integrated_gradients(pixels, image, target=2, steps=256)
    scores = pixels(np.stack([image, 0 * image]))[:, 2]  # the baseline is black pixels
    assert abs(ig.sum() - (scores[0] - scores[1])) < 1e-2 * abs(scores[0] - scores[1])


def test_uint8_pixels_are_read_as_in_0_1(rng):
    from faltung.explain import activations

    model = colour_net().eval()
    image = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    floats = image.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(activations(model, image)["fc"], activations(model, floats)["fc"])
    np.testing.assert_array_equal(saliency(model, image, 1), saliency(model, floats, 1))
