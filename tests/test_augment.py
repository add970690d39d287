"""Augmentation: exact geometry of shifts and warps, reproducible draws, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from faltung.augment import Augment, affine_warp, parse_augment, rotation_scale, shift_images


def images(n=3, c=2, h=9, w=7, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (1, 0), (0, -2), (2, 3), (-1, -1)])
def test_whole_pixel_shift_equals_roll_on_the_interior(dy, dx):
    x = images()
    y = shift_images(x, np.full(3, dy), np.full(3, dx))
    rolled = np.roll(x, (dy, dx), axis=(2, 3))
    h, w = x.shape[2:]
    inner = (
        slice(None),
        slice(None),
        slice(max(dy, 0), h + min(dy, 0)),
        slice(max(dx, 0), w + min(dx, 0)),
    )
    np.testing.assert_array_equal(y[inner], rolled[inner])
    outside = np.ones_like(x, bool)
    outside[inner] = False
    assert np.all(y[outside] == 0)


def test_each_image_gets_its_own_shift():
    x = images(n=2)
    y = shift_images(x, np.array([1, 0]), np.array([0, 2]))
    np.testing.assert_array_equal(y[0, :, 1:], x[0, :, :-1])
    np.testing.assert_array_equal(y[1, :, :, 2:], x[1, :, :, :-2])


def test_rotation_by_zero_is_the_identity():
    x = images()
    y = affine_warp(x, rotation_scale(np.zeros(3), np.ones(3)))
    np.testing.assert_array_equal(y, x)


def test_quarter_turn_of_a_square_image_is_rot90():
    x = images(h=8, w=8)
    y = affine_warp(x, rotation_scale(np.full(3, np.pi / 2), np.ones(3)))
    np.testing.assert_allclose(y, np.rot90(x, k=-1, axes=(2, 3)), atol=1e-5)


def test_bilinear_weights_of_a_zoom():
    """Zooming 2x about the centre of a 4x4 image: output (1, 1) samples the input at
    (1.25, 1.25), a quarter of the way to its neighbours: weights 9, 3, 3, 1 (/16)."""
    x = images(n=1, c=1, h=4, w=4)[0, 0]
    y = affine_warp(x[None, None], rotation_scale(np.zeros(1), np.full(1, 2.0)))
    expected = (9 * x[1, 1] + 3 * x[1, 2] + 3 * x[2, 1] + x[2, 2]) / 16
    np.testing.assert_allclose(y[0, 0, 1, 1], expected, rtol=1e-6)


def test_same_generator_same_batch_and_flips_mirror():
    augment = Augment(["shift", "flip", "affine", "brightness", "contrast"])
    x = images(n=8)
    a = augment(x, np.random.default_rng([0, 1, 2]))
    b = augment(x, np.random.default_rng([0, 1, 2]))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == x.shape and not np.array_equal(a, x)
    flipped = Augment(["flip"])(x, np.random.default_rng(3))
    for original, out in zip(x, flipped):
        assert np.array_equal(out, original) or np.array_equal(out, original[..., ::-1])


def test_parse_names_and_defaults():
    assert parse_augment(None) is None and parse_augment("none") is None
    assert parse_augment("auto", digits=True).names == ("shift", "affine")
    assert parse_augment("auto").names == ("shift", "flip")
    assert parse_augment("flip, contrast").names == ("flip", "contrast")
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        parse_augment("rotate")
    with pytest.raises(ValueError, match="',' names no augmentation"):
        parse_augment(",")
    assert parse_augment("") is None  # as a run saved with --augment '' resumes


def test_training_with_augmentation_resumes_bit_exactly(tmp_path):
    from faltung import Sequential
    from faltung.layers import Dense, Flatten
    from faltung.losses import SoftmaxCrossEntropy
    from faltung.optim import SGD
    from faltung.train import Trainer

    rng = np.random.default_rng(0)
    data = (rng.random((20, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 20))
    augment = Augment(["shift", "affine", "brightness"])

    def run(epochs, resume=False):
        model = Sequential([("flat", Flatten()), ("fc", Dense(36, 3))], seed=0)
        trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.1), data,
                          epochs=epochs, batch_size=6, augment=augment,
                          checkpoint_path=tmp_path / "c.npz")  # fmt: skip
        if resume:
            trainer.load_checkpoint(tmp_path / "c.npz")
        trainer.fit()
        return model

    whole = run(3)
    run(1)
    resumed = run(3, resume=True)
    for p, q in zip(whole.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(p.value, q.value)
    plain = Sequential([("flat", Flatten()), ("fc", Dense(36, 3))], seed=0)
    Trainer(plain, SoftmaxCrossEntropy(), SGD(plain.parameters(), lr=0.1), data, epochs=3,
            batch_size=6).fit()  # fmt: skip
    assert not np.array_equal(plain.parameters()[0].value, whole.parameters()[0].value)


def test_standardised_images_are_augmented_as_pixels_first():
    """A shift brings in black (pixel 0), which standardised is -mean/std, not 0; the
    brightness offset is in pixel units. Both happen before the standardisation."""
    from faltung import Sequential
    from faltung.datasets import ImageArray, Preprocessing
    from faltung.layers import Dense, Flatten
    from faltung.losses import SoftmaxCrossEntropy
    from faltung.optim import SGD
    from faltung.train import Trainer

    pixels = np.full((4, 1, 6, 6), 255, np.uint8)  # white images
    prep = Preprocessing((0.5,), (0.25,))
    model = Sequential([("flat", Flatten()), ("fc", Dense(36, 2))], seed=0)
    trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.1),
                      (ImageArray(pixels, prep), np.zeros(4, np.int64)), epochs=1, batch_size=4,
                      augment=Augment(["shift"], max_shift=2))  # fmt: skip
    batch, _ = trainer._batch(0, np.arange(4))
    assert set(np.unique(batch)) <= {-2.0, 2.0} and (batch == -2.0).any()  # black, white
    trainer.augment = Augment(["brightness"], brightness=0.1)
    batch, _ = trainer._batch(0, np.arange(4))
    offsets = batch[:, 0, 0, 0] * 0.25 + 0.5 - 1.0  # back to pixels, less the white
    assert np.abs(offsets).max() <= 0.1 + 1e-6 and np.abs(offsets).max() > 0.01
