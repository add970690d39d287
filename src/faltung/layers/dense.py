"""Fully connected layer and Flatten."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..init import as_generator, get_initializer
from .base import Layer, floating


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
        if in_features < 1 or out_features < 1:
            raise self._fail(f"feature counts must be positive, got {in_features}->{out_features}")
        self.in_features, self.out_features, self.has_bias = in_features, out_features, bias
        self.weight_init = weight_init
        self._init = get_initializer(weight_init)
        self.dtype = np.dtype(dtype)
        self._x: np.ndarray | None = None
        self.reset_parameters(as_generator(rng))

    def reset_parameters(self, rng: np.random.Generator) -> None:
        self.params["weight"] = self._init((self.out_features, self.in_features), rng, self.dtype)
        if self.has_bias:
            self.params["bias"] = np.zeros(self.out_features, self.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, 2, self.in_features)
        x = floating(x, self.dtype)
        # W x^T rather than x W^T: the same product, but OpenBLAS runs it markedly faster
        # when the weight matrix is the left operand in its own layout (small batches).
        y = (self.params["weight"] @ x.T).T
        if self.has_bias:
            y += self.params["bias"]
        self._x = x if self.caching else None
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        if self._x is None:
            raise self._fail("backward called without a forward pass in training mode")
        weight = self.params["weight"]
        # A fresh array on purpose: matmul with out= misses BLAS's fast path here (3x slower).
        self.grads["weight"] = dy.T @ self._x
        if self.has_bias:
            self.grads["bias"] = np.ones(len(dy), dy.dtype) @ dy
        return (weight.T @ dy.T).T if self.needs_input_grad else None

    def config(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.has_bias,
            "weight_init": self.weight_init,
        }


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in C order (PyTorch's flatten of NCHW)."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim < 2:
            raise self._fail(f"expected (N, ...) input with at least 2 dimensions, got {x.shape}")
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self._shape is None:
            raise self._fail("backward called before forward")
        return dy.reshape(self._shape)
