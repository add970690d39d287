"""Activation layers. Each keeps the one array its derivative needs (input or output)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional import activations as F
from .base import Layer


class _Activation(Layer):
    def __init__(self) -> None:
        super().__init__()
        self._saved: np.ndarray | None = None

    def _keep(self, array: np.ndarray) -> None:
        self._saved = array if self.caching else None

    def _cached(self) -> np.ndarray:
        if self._saved is None:
            raise self._fail("backward called without a forward pass in training mode")
        return self._saved


class ReLU(_Activation):
    def forward(self, x: np.ndarray) -> np.ndarray:
        y = F.relu(x)
        self._keep(y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.relu_backward(dy, self._cached())


class LeakyReLU(_Activation):
    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._keep(x)
        return F.leaky_relu(x, self.negative_slope)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.leaky_relu_backward(dy, self._cached(), self.negative_slope)

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(_Activation):
    """Numerically stable for any |x|: no overflow warning, exact 0 and 1 in the limits."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = F.sigmoid(x)
        self._keep(y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.sigmoid_backward(dy, self._cached())


class Tanh(_Activation):
    def forward(self, x: np.ndarray) -> np.ndarray:
        y = F.tanh(x)
        self._keep(y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.tanh_backward(dy, self._cached())


class Softmax(_Activation):
    """Softmax over ``axis`` (default: the class axis of (N, K) input).

    For training a classifier prefer logits plus SoftmaxCrossEntropy, which fuses the two
    stably; this layer is for models that must output probabilities.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = F.softmax(x, self.axis)
        self._keep(y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.softmax_backward(dy, self._cached(), self.axis)

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class Identity(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy
