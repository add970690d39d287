"""Layer behaviour beyond gradients: shapes, dtypes, modes, validation messages."""

from __future__ import annotations

import numpy as np
import pytest

from faltung.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    LpPool2D,
    MaxPool2D,
    Sigmoid,
    Softmax,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "layer,shape",
    [
        (lambda: Conv2D(3, 4, 3, padding="same", rng=0), (2, 3, 6, 6)),
        (lambda: MaxPool2D(2), (2, 3, 6, 6)),
        (lambda: AvgPool2D(3, 1, 1), (2, 3, 6, 6)),
        (lambda: LpPool2D(2, 2), (2, 3, 6, 6)),
        (lambda: BatchNorm2D(3), (2, 3, 6, 6)),
        (lambda: Dense(6, 4, rng=0), (2, 6)),
        (lambda: Dropout(0.5, rng=0), (2, 6)),
        (lambda: GlobalAvgPool2D(), (2, 3, 6, 6)),
    ],
)
def test_float_dtype_is_preserved_through_forward_and_backward(layer, shape, dtype):
    lay = layer()
    if dtype == np.float64:
        lay.astype(np.float64)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    y = lay.forward(x)
    assert y.dtype == dtype
    assert lay.backward(np.ones_like(y)).dtype == dtype
    assert all(g.dtype == dtype for g in lay.grads.values())


def test_integer_images_become_float32():
    y = Conv2D(1, 2, 3, rng=0)(np.zeros((1, 1, 5, 5), np.uint8))
    assert y.dtype == np.float32


@pytest.mark.parametrize("training", [True, False])
def test_dropout_takes_integer_images_as_floats_too(training):
    """No uint8 arithmetic: 1/(1-p) truncated to 1, or 2 * 200 wrapped to 144."""
    layer = Dropout(0.5, rng=0).train(training)
    y = layer(np.full((1, 1, 20, 20), 200, np.uint8))
    assert y.dtype == np.float32
    assert set(np.unique(y)) == ({0.0, 400.0} if training else {200.0})


def test_same_padding_keeps_size_even_kernel_and_dilation():
    for kernel, dilation in [(3, 1), (4, 1), (3, 2), ((2, 5), 1)]:
        conv = Conv2D(2, 2, kernel, padding="same", dilation=dilation, rng=0)
        assert conv(np.zeros((1, 2, 9, 8), np.float32)).shape == (1, 2, 9, 8)


def test_sigmoid_is_stable_for_huge_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = Sigmoid()(np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], np.float32))
    np.testing.assert_allclose(y, [[0.0, 1.9287e-22, 0.5, 1.0, 1.0]], rtol=1e-4, atol=0)


def test_softmax_is_stable_and_sums_to_one():
    y = Softmax()(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0]])


def test_dropout_is_inverted_and_off_in_eval():
    layer = Dropout(0.25, rng=0)
    x = np.ones((400, 500), np.float32)
    y = layer(x)
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs(y.mean() - 1.0) < 0.01
    layer.eval()
    assert layer(x) is x


def test_batchnorm_running_statistics_follow_pytorch_convention():
    layer = BatchNorm1D(2, momentum=0.1)
    x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    layer(x)
    np.testing.assert_allclose(layer.buffers["running_mean"], [0.2, 0.4])
    # Unbiased variance (2 and 8) enters the running average.
    np.testing.assert_allclose(layer.buffers["running_var"], [0.9 + 0.2, 0.9 + 0.8])
    layer.eval()
    y = layer(x)
    expected = (x - [0.2, 0.4]) / np.sqrt(np.array([1.1, 1.7]) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_batchnorm2d_normalises_per_channel():
    x = (
        np.random.default_rng(0).standard_normal((8, 3, 5, 5))
        * np.array([1, 10, 100])[None, :, None, None]
    )
    y = BatchNorm2D(3).astype(np.float64)(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)


@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_batchnorm_backward_follows_the_mode_its_forward_ran_in(kernels):
    """Switching mode between forward and backward must not change the formula used."""
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 3, 5, 5))

    def gradient(forward_mode, backward_mode):
        layer = BatchNorm2D(3).astype(np.float64).use_kernels(kernels)
        layer.buffers["running_var"][:] = [0.5, 2.0, 4.0]
        layer.train() if forward_mode == "train" else layer.eval(keep_cache=True)
        layer.forward(x)
        layer.train() if backward_mode == "train" else layer.eval(keep_cache=True)
        return layer.backward(dy)

    training, inference = gradient("train", "train"), gradient("eval", "eval")
    assert not np.allclose(training, inference)
    np.testing.assert_allclose(gradient("train", "eval"), training)
    np.testing.assert_allclose(gradient("eval", "train"), inference)


@pytest.mark.parametrize(
    "make,x,match",
    [
        (
            lambda: Conv2D(3, 4, 3, rng=0),
            np.zeros((2, 3, 8)),
            r"Conv2D.*expected input \(N, C, H, W\), got shape \(2, 3, 8\)",
        ),
        (
            lambda: Conv2D(3, 4, 3, rng=0),
            np.zeros((2, 1, 8, 8)),
            r"expected 3 input channels, got shape \(2, 1, 8, 8\)",
        ),
        (
            lambda: Conv2D(1, 4, 5, rng=0),
            np.zeros((2, 1, 3, 3)),
            r"does not fit the padded input.*\(2, 1, 3, 3\)",
        ),
        (
            lambda: Dense(5, 2, rng=0),
            np.zeros((2, 4)),
            r"Dense.*expected 5 input features, got shape \(2, 4\)",
        ),
        (lambda: MaxPool2D(4), np.zeros((1, 1, 3, 3)), r"MaxPool2D.*does not fit.*\(1, 1, 3, 3\)"),
        (lambda: BatchNorm2D(4), np.zeros((2, 3, 4, 4)), r"BatchNorm2D.*expected 4 input channels"),
    ],
)
def test_bad_input_names_the_layer_and_shapes(make, x, match):
    with pytest.raises(ValueError, match=match):
        make()(x.astype(np.float32))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Conv2D(3, 4, 3, groups=2), "groups=2 must divide in_channels=3"),
        (lambda: Conv2D(0, 4, 3), "in_channels must be positive"),
        (lambda: Conv2D(1, 4, 0), "kernel_size must be positive"),
        (lambda: Conv2D(1, 4, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
        (lambda: Conv2D(1, 4, 3, padding="full"), "padding must be"),
        (lambda: MaxPool2D(2, padding=2), "half the kernel"),
        (lambda: Dense(0, 3), "in_features must be positive"),
        (lambda: Dropout(1.0), r"p must be in \[0, 1\)"),
        (lambda: LpPool2D(0, 2), "p must be a positive number"),
        (lambda: BatchNorm2D(3, eps=0.0), "eps must be positive and finite"),
        (lambda: BatchNorm1D(3, eps=float("nan")), "eps must be positive and finite"),
        (lambda: LeakyReLU(float("inf")), "negative_slope must be finite"),
        (lambda: Conv2D(1.5, 4, 3), "in_channels must be an integer, got 1.5"),
        (lambda: Conv2D(1, 4, (2.7, 3)), "kernel_size must be an int or a pair of ints"),
        (lambda: Dense(True, 3), "in_features must be an integer, got True"),
        (lambda: BatchNorm2D(3, momentum=2), r"momentum must be in \[0, 1\] or None"),
    ],
)
def test_bad_configuration_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_numpy_integers_are_arguments_like_any_int(tmp_path):
    """Dense(np.prod(shape), 10) builds, and its model file is written and read back."""
    from faltung import Sequential
    from faltung.io import load_model, save_model

    model = Sequential(
        [
            ("conv", Conv2D(np.int64(1), np.int64(4), np.int64(3), stride=np.int32(1))),
            ("pool", MaxPool2D(np.int64(2))),
            ("flat", Flatten()),
            ("fc", Dense(np.prod((4, 13, 13)), 10)),
            ("softmax", Softmax(np.int64(1))),
        ],
        seed=0,
    )
    save_model(model, tmp_path / "m.npz")
    loaded, _ = load_model(tmp_path / "m.npz")
    assert loaded.config() == model.config()
    assert type(loaded["fc"].in_features) is int and loaded["conv"].kernel_size == (3, 3)


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(ValueError, match="backward called without a forward pass"):
        Conv2D(1, 1, 1, rng=0).backward(np.zeros((1, 1, 1, 1), np.float32))
