"""Pooling layers: MaxPool2D, AvgPool2D, the article's LpPool2D, GlobalAvgPool2D."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..functional.shapes import pool_arguments
from .base import Layer


class _Pool2D(Layer):
    def __init__(
        self,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()
        try:
            self.kernel_size, self.stride, self.padding = pool_arguments(
                kernel_size, stride, padding
            )
        except ValueError as error:
            raise self._fail(str(error)) from None

    def config(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }


class MaxPool2D(_Pool2D):
    """Maximum over each window; stride defaults to the kernel size (PyTorch's convention)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        # Inference skips recording which input won each window: nothing will ask.
        return self._run(
            self.kernels.max_pool2d_forward,
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            need_cache=self.caching,
        )

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.max_pool2d_backward(dy, self._cached())


class AvgPool2D(_Pool2D):
    """Mean over each window; zero padding counts towards the mean (PyTorch's default)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(
            self.kernels.avg_pool2d_forward, x, self.kernel_size, self.stride, self.padding
        )

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.avg_pool2d_backward(dy, self._cached())


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
        return self._run(
            self.kernels.lp_pool2d_forward, x, self.p, self.kernel_size, self.stride, self.padding
        )

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.lp_pool2d_backward(dy, self._cached())

    def config(self) -> dict[str, Any]:
        # JSON has no infinity: the string "inf" round-trips through float().
        return {"p": "inf" if math.isinf(self.p) else self.p, **super().config()}


class GlobalAvgPool2D(Layer):
    """(N, C, H, W) -> (N, C): the mean of each channel map."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._run(self.kernels.global_avg_pool2d_forward, x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.global_avg_pool2d_backward(dy, self._cached())
