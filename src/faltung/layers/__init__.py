"""Stateful layers: each holds ``params``/``grads``/``buffers`` and calls a pure kernel."""

from .activation import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer, Parameter
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .norm import BatchNorm1D, BatchNorm2D, SyncBatchNorm1D, SyncBatchNorm2D
from .pool import AvgPool2D, GlobalAvgPool2D, LpPool2D, MaxPool2D
from .residual import Residual, layer_from_config

# PyTorch's name for the fully connected layer.
Linear = Dense

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
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
        Residual,
        Sigmoid,
        Softmax,
        SyncBatchNorm1D,
        SyncBatchNorm2D,
        Tanh,
    )
}
# Other names a network file may use for a layer type.
ALIASES = {"Linear": "Dense"}

__all__ = [
    "ALIASES",
    "LAYER_TYPES",
    "AvgPool2D",
    "BatchNorm1D",
    "BatchNorm2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2D",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Linear",
    "LpPool2D",
    "MaxPool2D",
    "Parameter",
    "ReLU",
    "Residual",
    "Sigmoid",
    "Softmax",
    "SyncBatchNorm1D",
    "SyncBatchNorm2D",
    "Tanh",
    "layer_from_config",
]
