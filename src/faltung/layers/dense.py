"""Fully connected layer and Flatten."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..init import as_generator, get_initializer
from .base import Layer


class Dense(Layer):
    """y = x W^T + b for x (N, in_features); weight (out, in) and bias (out,) as in PyTorch.

    >>> Dense(800, 500, rng=0)(np.zeros((5, 800), np.float32)).shape
    (5, 500)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        weight_init: str = "he_normal",
        rng: int | np.random.Generator | None = None,
        dtype: np.dtype = np.float32,
    ) -> None:
        super().__init__()
        in_features = self._positive_int(in_features, "in_features")
        out_features = self._positive_int(out_features, "out_features")
        self.in_features, self.out_features, self.has_bias = in_features, out_features, bias
        self.weight_init = weight_init
        self._init = get_initializer(weight_init)
        self.dtype = np.dtype(dtype)
        self.reset_parameters(as_generator(rng))

    def reset_parameters(self, rng: np.random.Generator) -> None:
        self.params["weight"] = self._init((self.out_features, self.in_features), rng, self.dtype)
        if self.has_bias:
            self.params["bias"] = np.zeros(self.out_features, self.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(
            self.kernels.linear_forward, x, self.params["weight"], self.params.get("bias")
        )

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        dx, dweight, dbias = self.kernels.linear_backward(dy, self._cached(), self.needs_input_grad)
        self._store_grads(dweight, dbias)
        return dx

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.has_bias,
            "weight_init": self.weight_init,
        }


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in C order (PyTorch's flatten of NCHW)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim < 2:
            raise self._fail(f"expected (N, ...) input with at least 2 dimensions, got {x.shape}")
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self._cached())
