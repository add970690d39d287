"""Small networks for the explain tests: the presets' shape and an unrelated colour one."""

from __future__ import annotations

import numpy as np

from faltung import Sequential
from faltung.layers import (
    AvgPool2D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from faltung.losses import SoftmaxCrossEntropy
from faltung.optim import Adam
from faltung.train import Trainer

from ..synthetic import synthetic_arrays


def grey_net(seed: int = 0) -> Sequential:
    """The article's layer types at a tenth of the width (28x28 grey, sigmoid head)."""
    return Sequential(
        [
            ("conv1", Conv2D(1, 4, 5)),
            ("pool1", MaxPool2D(2)),
            ("relu1", ReLU()),
            ("flatten", Flatten()),
            ("fc1", Dense(4 * 12 * 12, 32)),
            ("sigmoid", Sigmoid()),
            ("fc2", Dense(32, 10)),
        ],
        seed=seed,
    )


def colour_net(seed: int = 0) -> Sequential:
    """3x32x32 with padding, stride, dilation, groups, BatchNorm, AvgPool, Dropout and Tanh."""
    return Sequential(
        [
            ("conv_a", Conv2D(3, 6, 3, padding=1)),
            ("bn", BatchNorm2D(6)),
            ("tanh", Tanh()),
            ("conv_b", Conv2D(6, 6, 3, stride=2, padding=2, dilation=2, groups=2)),
            ("relu", ReLU()),
            ("avg", AvgPool2D(2)),
            ("flat", Flatten()),
            ("drop", Dropout(0.3)),
            ("fc", Dense(6 * 8 * 8, 4)),
        ],
        seed=seed,
    )


def settle_batch_norm(model: Sequential, images: np.ndarray) -> None:
    """A few training-mode passes so that running statistics are not the initial 0 and 1."""
    model.train()
    for _ in range(3):
        model.forward(images)
    model.eval()


def trained_grey_net(epochs: int = 1) -> tuple[Sequential, np.ndarray, np.ndarray]:
    """grey_net trained for one epoch on 600 synthetic digits (about a second)."""
    arrays = synthetic_arrays(600, 50, seed=3)
    x = arrays["train_images"][:, None].astype(np.float32) / 255
    y = arrays["train_labels"].astype(np.int64)
    model = grey_net(1)
    Trainer(model, SoftmaxCrossEntropy(), Adam(model.parameters(), lr=3e-3), (x, y),
            epochs=epochs, batch_size=20).fit()  # fmt: skip
    xt = arrays["test_images"][:, None].astype(np.float32) / 255
    return model.eval(), xt, arrays["test_labels"].astype(np.int64)
