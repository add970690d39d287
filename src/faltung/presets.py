"""Named experiments: an architecture plus the hyper-parameters that go with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .layers import Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU, Sigmoid
from .model import Sequential


def lenet_trunk() -> list[tuple[str, Layer]]:
    """The article's convolutional stack: conv 20@5x5, 2x2 max pool, ReLU, conv 50@5x5, pool, ReLU.

    The article applies each ReLU before its pooling; here it runs after, as in PyTorch's
    MNIST example. ReLU is monotone, so max pooling and ReLU commute, outputs and gradients
    included (tested), and the ReLU then touches a quarter of the data.
    """
    return [
        ("conv1", Conv2D(1, 20, 5)),
        ("pool1", MaxPool2D(2, 2)),
        ("relu1", ReLU()),
        ("conv2", Conv2D(20, 50, 5)),
        ("pool2", MaxPool2D(2, 2)),
        ("relu2", ReLU()),
        ("flatten", Flatten()),
    ]


def article_network(seed: int) -> Sequential:
    """The article's LeNet: the trunk, then 800 -> 500 with a sigmoid, then 500 -> 10.

    The final softmax lives in the loss (SoftmaxCrossEntropy), fused for stability;
    ``predict_proba`` applies it for probabilities.
    """
    head = [
        ("fc1", Dense(800, 500, weight_init="glorot_uniform")),
        ("sigmoid", Sigmoid()),
        ("fc2", Dense(500, 10, weight_init="glorot_uniform")),
    ]
    return Sequential(lenet_trunk() + head, seed=seed)


def lenet_network(seed: int) -> Sequential:
    """The same trunk with ReLU in the classifier and dropout before its last layer."""
    head = [
        ("fc1", Dense(800, 500)),
        ("relu3", ReLU()),
        ("dropout", Dropout(0.5)),
        ("fc2", Dense(500, 10, weight_init="glorot_uniform")),
    ]
    return Sequential(lenet_trunk() + head, seed=seed)


@dataclass(frozen=True)
class Preset:
    """``description`` names the network and optimiser; the sizes, epochs and learning rates
    of a run are its settings (``defaults``, overridden by the flags), printed by the run."""

    name: str
    description: str
    build: Callable[[int], Sequential]
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
        },
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
