"""Named experiments: an architecture plus the hyper-parameters that go with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .layers import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    MaxPool2D,
    ReLU,
    Residual,
    Sigmoid,
)
from .model import Sequential


def lenet_trunk(in_channels: int = 1) -> list[tuple[str, Layer]]:
    """The article's convolutional stack: conv 20@5x5, 2x2 max pool, ReLU, conv 50@5x5, pool, ReLU.

    The article applies each ReLU before its pooling; here it runs after, as in PyTorch's
    MNIST example. ReLU is monotone, so max pooling and ReLU commute, outputs and gradients
    included (tested), and the ReLU then touches a quarter of the data.
    """
    return [
        ("conv1", Conv2D(in_channels, 20, 5)),
        ("pool1", MaxPool2D(2, 2)),
        ("relu1", ReLU()),
        ("conv2", Conv2D(20, 50, 5)),
        ("pool2", MaxPool2D(2, 2)),
        ("relu2", ReLU()),
        ("flatten", Flatten()),
    ]


def lenet_features(input_shape: tuple[int, ...]) -> int:
    """Width of the trunk's output: 800 for 28x28 (50 maps of 4x4)."""
    if min(input_shape[1:]) < 16:
        size = "x".join(map(str, input_shape[1:]))
        raise ValueError(
            f"LeNet's two 5x5 convolutions, each pooled 2x2, need images of at least 16x16; "
            f"these are {size}"
        )
    h, w = ((((n - 4) // 2) - 4) // 2 for n in input_shape[1:])
    return 50 * h * w


def article_network(
    seed: int, input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10
) -> Sequential:
    """The article's LeNet: the trunk, then 800 -> 500 with a sigmoid, then 500 -> 10.

    The final softmax lives in the loss (SoftmaxCrossEntropy), fused for stability;
    ``predict_proba`` applies it for probabilities.
    """
    head = [
        ("fc1", Dense(lenet_features(input_shape), 500, weight_init="glorot_uniform")),
        ("sigmoid", Sigmoid()),
        ("fc2", Dense(500, classes, weight_init="glorot_uniform")),
    ]
    return Sequential(lenet_trunk(input_shape[0]) + head, seed=seed)


def lenet_network(
    seed: int, input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10
) -> Sequential:
    """The same trunk with ReLU in the classifier and dropout before its last layer."""
    head = [
        ("fc1", Dense(lenet_features(input_shape), 500)),
        ("relu3", ReLU()),
        ("dropout", Dropout(0.5)),
        ("fc2", Dense(500, classes, weight_init="glorot_uniform")),
    ]
    return Sequential(lenet_trunk(input_shape[0]) + head, seed=seed)


def basic_block(in_channels: int, out_channels: int, stride: int = 1) -> Residual:
    """ResNet's basic block (He et al., 2016): two 3x3 convolutions with batch norm; the
    shortcut is the identity, or a strided 1x1 convolution where the shape changes.
    The convolutions have no bias: the batch norm after each one has its own."""
    body = [
        ("conv1", Conv2D(in_channels, out_channels, 3, stride, padding=1, bias=False)),
        ("bn1", BatchNorm2D(out_channels)),
        ("relu1", ReLU()),
        ("conv2", Conv2D(out_channels, out_channels, 3, padding=1, bias=False)),
        ("bn2", BatchNorm2D(out_channels)),
    ]
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = [
            ("conv", Conv2D(in_channels, out_channels, 1, stride, bias=False)),
            ("bn", BatchNorm2D(out_channels)),
        ]
    return Residual(body, shortcut)


RESNET_WIDTHS = (16, 32, 128)


def resnet_network(
    seed: int,
    input_shape: tuple[int, ...] = (1, 28, 28),
    classes: int = 10,
    widths: tuple[int, int, int] = RESNET_WIDTHS,
) -> Sequential:
    """A small ResNet for 28x28 images: a 3x3 stem, one basic block at each of 28x28, 14x14
    and 7x7 (``widths`` channels), global average pooling and one dense layer.

    The widest stage is the cheapest per channel: its maps are a sixteenth of the first's.
    """
    first, second, third = widths
    layers: list[tuple[str, Layer]] = [
        ("conv1", Conv2D(input_shape[0], first, 3, padding=1, bias=False)),
        ("bn1", BatchNorm2D(first)),
        ("relu1", ReLU()),
    ]
    stages = [(first, first, 1), (first, second, 2), (second, third, 2)]
    for i, (cin, cout, stride) in enumerate(stages, start=1):
        layers += [(f"block{i}", basic_block(cin, cout, stride)), (f"relu{i + 1}", ReLU())]
    layers += [("pool", GlobalAvgPool2D()), ("fc", Dense(third, classes))]
    return Sequential(layers, seed=seed)


@dataclass(frozen=True)
class Preset:
    """``description`` names the network and optimiser; the sizes, epochs and learning rates
    of a run are its settings (``defaults``, overridden by the flags), printed by the run.
    ``build(seed, input_shape=(1, 28, 28), classes=10)`` fits the network to the data."""

    name: str
    description: str
    build: Callable[..., Sequential]
    defaults: dict[str, Any] = field(default_factory=dict)


# Keys of ``defaults`` are the command line's option names (with underscores).
PRESETS: dict[str, Preset] = {
    "article": Preset(
        "article",
        "the article's LeNet: two 5x5 convolutions, a sigmoid layer of 500, plain SGD with L2",
        article_network,
        {
            "epochs": 50,
            "batch_size": 5,
            "optimizer": "sgd",
            "lr": 0.005,
            "momentum": 0.0,
            "weight_decay": 1e-4,
            "schedule": "step",
            "lr_step": 10,
            "lr_gamma": 0.9,
            "warmup": 0.0,
            "train_size": 10_000,
            "test_size": 100,
            "normalize": False,
        },
    ),
    "lenet": Preset(
        "lenet",
        "the article's convolutions, a ReLU + dropout classifier, Adam",
        lenet_network,
        {
            "epochs": 4,
            "batch_size": 64,
            "optimizer": "adam",
            "lr": 2e-3,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "schedule": "cosine",
            "lr_step": 10,
            "lr_gamma": 0.9,
            "warmup": 0.5,
            "train_size": None,
            "test_size": None,
            "normalize": False,
        },
    ),
    "resnet": Preset(
        "resnet",
        "a small ResNet: a 3x3 stem and three residual blocks (16, 32, 128 channels) with "
        "batch norm, global average pooling; SGD with Nesterov momentum, horizontal flips "
        "(not for digits)",
        resnet_network,
        {
            "epochs": 15,
            "batch_size": 128,
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "lr_step": 10,
            "lr_gamma": 0.9,
            "warmup": 0.5,
            "train_size": None,
            "test_size": None,
            "augment": "flip",  # not for digits (see cli.settings.preset_augment)
        },
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
