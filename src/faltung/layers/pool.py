"""Pooling layers: MaxPool2D, AvgPool2D, the article's LpPool2D, GlobalAvgPool2D."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..functional import pool as F
from ..functional._shapes import pool_geometry_args
from .base import Layer


class _Pool2D(Layer):
    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_geometry_args(
            kernel_size, stride, padding
        )
        self._cache: Any = None

    def _pool(self, kernel, x: np.ndarray, *args: Any) -> np.ndarray:
        """Run a pooling kernel; its geometry errors come back naming this layer."""
        self._check_input(x, 4)
        try:
            y, cache = kernel(x, *args, self.kernel_size, self.stride, self.padding)
        except ValueError as error:
            raise self._fail(f"{error} (input shape {x.shape})") from None
        self._cache = cache if self.caching else None
        return y

    def _cached(self) -> Any:
        if self._cache is None:
            raise self._fail("backward called without a forward pass in training mode")
        return self._cache

    def config(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }


class MaxPool2D(_Pool2D):
    """Maximum over each window; stride defaults to the kernel size (PyTorch's convention)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._pool(F.max_pool2d_forward, x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.max_pool2d_backward(dy, self._cached())


class AvgPool2D(_Pool2D):
    """Mean over each window; zero padding counts towards the mean (PyTorch's default)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._pool(F.avg_pool2d_forward, x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.avg_pool2d_backward(dy, self._cached())


class LpPool2D(_Pool2D):
    """The article's pooling: u = ((1/H^2) * sum over the window of z^P)^(1/P).

    ``p=1`` equals AvgPool2D and ``p=inf`` equals MaxPool2D exactly.
    """

    def __init__(
        self,
        p: float,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__(kernel_size, stride, padding)
        if not (isinstance(p, (int, float)) and p > 0):
            raise self._fail(f"p must be a positive number or inf, got {p!r}")
        self.p = float(p)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._pool(F.lp_pool2d_forward, x, self.p)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return F.lp_pool2d_backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        # JSON has no infinity: the string "inf" round-trips through float().
        return {"p": "inf" if math.isinf(self.p) else self.p, **super().config()}


class GlobalAvgPool2D(Layer):
    """(N, C, H, W) -> (N, C): the mean of each channel map."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, 4)
        y, shape = F.global_avg_pool2d_forward(x)
        self._shape = shape
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self._shape is None:
            raise self._fail("backward called before forward")
        return F.global_avg_pool2d_backward(dy, self._shape)
