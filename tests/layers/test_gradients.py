"""Every layer and loss, numerically gradient-checked over a grid of configurations.

A declarative table: (id, layer factory, input shape). ``gradcheck`` perturbs the input and
every parameter in float64 and compares with backward().
"""

from __future__ import annotations

import numpy as np
import pytest

from faltung import Sequential, gradcheck
from faltung.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Identity,
    LeakyReLU,
    LpPool2D,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from faltung.losses import MSELoss, SoftmaxCrossEntropy

TOLERANCE = 1e-6


def conv_cases():
    for stride in (1, 2):
        for padding in (0, 1, "same"):
            for dilation in (1, 2):
                for groups in (1, 2):
                    if padding == "same" and stride != 1:
                        continue
                    yield (
                        f"conv-s{stride}-p{padding}-d{dilation}-g{groups}",
                        lambda s=stride, p=padding, d=dilation, g=groups: Conv2D(
                            4, 4, 3, stride=s, padding=p, dilation=d, groups=g, rng=0
                        ),
                        (2, 4, 7, 6),
                    )
    yield (
        "conv-rect-kernel-batch1",
        lambda: Conv2D(2, 3, (2, 3), padding=(1, 0), rng=0),
        (1, 2, 5, 4),
    )
    yield "conv-no-bias-1x1", lambda: Conv2D(3, 2, 1, bias=False, rng=0), (2, 3, 3, 5)


def pool_cases():
    for cls in (MaxPool2D, AvgPool2D):
        yield f"{cls.__name__}-tiling", lambda c=cls: c(2), (2, 2, 6, 4)
        yield f"{cls.__name__}-overlap", lambda c=cls: c(3, 1), (1, 2, 5, 6)
        yield f"{cls.__name__}-stride2-pad1", lambda c=cls: c(3, 2, 1), (2, 2, 7, 5)
        yield f"{cls.__name__}-remainder", lambda c=cls: c(2), (1, 2, 5, 5)
    for p in (1, 2, 3):
        yield f"lp{p}-tiling", lambda p=p: LpPool2D(p, 2), (2, 2, 4, 6)
        yield f"lp{p}-overlap", lambda p=p: LpPool2D(p, 3, 1), (1, 2, 5, 5)
    yield "lp-inf", lambda: LpPool2D(float("inf"), 2), (2, 2, 4, 4)
    yield "global-avg", GlobalAvgPool2D, (2, 3, 4, 5)


def other_cases():
    yield "dense", lambda: Dense(7, 5, rng=0), (3, 7)
    yield "dense-batch1-no-bias", lambda: Dense(4, 3, bias=False, rng=0), (1, 4)
    yield "flatten", Flatten, (2, 3, 2, 2)
    yield "relu", ReLU, (3, 5)
    yield "leaky-relu", lambda: LeakyReLU(0.2), (2, 3, 4, 4)
    yield "sigmoid", Sigmoid, (3, 6)
    yield "tanh", Tanh, (3, 6)
    yield "softmax", Softmax, (4, 5)
    yield "identity", Identity, (2, 3)
    yield "dropout", lambda: Dropout(0.3, rng=0), (4, 6)
    yield "batchnorm1d", lambda: BatchNorm1D(5), (6, 5)
    yield "batchnorm2d", lambda: BatchNorm2D(3), (2, 3, 4, 3)


CASES = [*conv_cases(), *pool_cases(), *other_cases()]


def channels_last(x: np.ndarray) -> np.ndarray:
    """The same values as NCHW, laid out NHWC in memory, as our kernels produce them."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


# Memory layout only matters for 4-D inputs: those run in both layouts. The reference
# kernels ignore layout, so they run once per case.
LAYOUT_CASES = [
    pytest.param(factory, shape, layout, kernels, id=f"{name}-{layout}-{kernels}")
    for name, factory, shape in CASES
    for layout in (["nchw", "channels-last"] if len(shape) == 4 else ["nchw"])
    for kernels in (["fast", "reference"] if layout == "nchw" else ["fast"])
]


@pytest.mark.parametrize("factory,shape,layout,kernels", LAYOUT_CASES)
def test_layer_gradients(factory, shape, layout, kernels):
    layer = factory().use_kernels(kernels)
    # Keep inputs away from the kinks of ReLU/max so finite differences are well defined.
    x = np.random.default_rng(0).standard_normal(shape)
    x += np.sign(x) * 0.05
    if layout == "channels-last":
        x = channels_last(x)
    result = gradcheck(layer, x)
    assert result.passed(TOLERANCE), str(result)
    assert set(result.errors) == {"input", *layer.params}


@pytest.mark.parametrize(
    "make,shape", [(lambda: BatchNorm2D(3), (2, 3, 4, 3)), (lambda: BatchNorm1D(4), (5, 4))]
)
def test_batchnorm_gradients_in_eval_mode(make, shape):
    """Eval mode is a per-channel affine map of the running statistics; with keep_cache
    its gradients are available (attributions of a trained network need them)."""
    layer = make()
    rng = np.random.default_rng(3)
    layer.buffers["running_mean"][:] = rng.standard_normal(shape[1])
    layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, shape[1])
    layer.params["weight"][:] = rng.uniform(0.5, 2.0, shape[1])
    layer.eval(keep_cache=True)
    result = gradcheck(layer, rng.standard_normal(shape))
    assert result.passed(TOLERANCE), str(result)


def test_batchnorm_with_nonunit_affine_parameters():
    layer = BatchNorm2D(3)
    layer.params["weight"][:] = [0.5, 2.0, -1.0]
    layer.params["bias"][:] = [0.1, -0.3, 0.7]
    result = gradcheck(layer, np.random.default_rng(1).standard_normal((3, 3, 2, 2)))
    assert result.passed(TOLERANCE), str(result)


@pytest.mark.parametrize(
    "loss,prediction,target",
    [
        (SoftmaxCrossEntropy(), (5, 4), np.array([0, 3, 1, 1, 2])),
        (SoftmaxCrossEntropy(), (3, 4), np.eye(4)[[2, 0, 1]]),
        (SoftmaxCrossEntropy(label_smoothing=0.1), (3, 4), np.array([2, 0, 1])),
        (MSELoss(), (4, 3), np.linspace(-1, 1, 12).reshape(4, 3)),
    ],
    ids=["ce-labels", "ce-onehot", "ce-smoothing", "mse"],
)
def test_loss_gradients(loss, prediction, target):
    x = np.random.default_rng(2).standard_normal(prediction)
    result = gradcheck(loss, x, target)
    assert result.passed(TOLERANCE), str(result)


def test_whole_article_network_with_loss():
    model = Sequential(
        [
            ("conv1", Conv2D(1, 2, 3)),
            ("relu1", ReLU()),
            ("pool1", MaxPool2D(2)),
            ("conv2", Conv2D(2, 3, 2)),
            ("bn", BatchNorm2D(3)),
            ("relu2", ReLU()),
            ("flat", Flatten()),
            ("fc1", Dense(3 * 2 * 2, 5)),
            ("sig", Sigmoid()),
            ("drop", Dropout(0.2)),
            ("fc2", Dense(5, 3)),
        ],
        seed=3,
    )
    x = np.random.default_rng(4).standard_normal((3, 1, 9, 9))
    result = gradcheck(model, x, np.array([0, 2, 1]), loss=SoftmaxCrossEntropy())
    assert result.passed(TOLERANCE), str(result)
    assert len(result.errors) == 1 + len(model.parameters())
    # gradcheck works on a float64 copy: the model itself is untouched.
    assert model["conv1"].params["weight"].dtype == np.float32


def test_gradcheck_catches_a_wrong_gradient():
    class BrokenSigmoid(Sigmoid):
        def backward(self, dy):
            return super().backward(dy) * 1.01

    assert not gradcheck(BrokenSigmoid(), np.ones((2, 3))).passed(1e-4)
