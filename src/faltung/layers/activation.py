"""Activation layers: each calls its kernel pair and keeps the cache the derivative needs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..functional.shapes import is_int
from .base import Layer


class ReLU(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.kernels.relu_forward, x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.relu_backward(dy, self._cached())


class LeakyReLU(Layer):
    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not math.isfinite(negative_slope):
            raise self._fail(f"negative_slope must be finite, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.kernels.leaky_relu_forward, x, self.negative_slope)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.leaky_relu_backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(Layer):
    """Numerically stable for any |x|: no overflow warning, exact 0 and 1 in the limits."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.kernels.sigmoid_forward, x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.sigmoid_backward(dy, self._cached())


class Tanh(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.kernels.tanh_forward, x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.tanh_backward(dy, self._cached())


class Softmax(Layer):
    """Softmax over ``axis`` (default: the class axis of (N, K) input).

    For training a classifier prefer logits plus SoftmaxCrossEntropy, which fuses the two
    stably; this layer is for models that must output probabilities.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        if not is_int(axis):
            raise self._fail(f"axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    @property
    def shardable(self) -> bool:
        # Over the batch axis every output depends on every image; a negative axis other
        # than -1 may be that axis, depending on the input's dimensions.
        return self.axis >= 1 or self.axis == -1

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.kernels.softmax_forward, x, self.axis)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.softmax_backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class Identity(Layer):
    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy
