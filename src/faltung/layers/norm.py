"""Batch normalisation layers: statistics per channel, running averages for eval mode."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functional.norm import (
    BatchNormCache,
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_inference,
    batch_norm_inference_backward,
)
from .base import Layer


class _BatchNorm(Layer):
    ndim = 0

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        dtype: np.dtype = np.float32,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise self._fail(f"num_features must be positive, got {num_features}")
        if not 0 <= momentum <= 1:
            raise self._fail(f"momentum must be in [0, 1], got {momentum}")
        self.num_features, self.eps, self.momentum, self.affine = (
            num_features,
            float(eps),
            float(momentum),
            affine,
        )
        self.dtype = np.dtype(dtype)
        self._cache: BatchNormCache | None = None
        self._eval_input: np.ndarray | None = None  # for backward in eval mode (explain)
        self.reset_parameters(np.random.default_rng(0))

    def reset_parameters(self, rng: np.random.Generator) -> None:
        if self.affine:
            self.params["weight"] = np.ones(self.num_features, self.dtype)
            self.params["bias"] = np.zeros(self.num_features, self.dtype)
        self.buffers["running_mean"] = np.zeros(self.num_features, self.dtype)
        self.buffers["running_var"] = np.ones(self.num_features, self.dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), np.int64)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x, self.ndim, self.num_features)
        gamma, beta = self.params.get("weight"), self.params.get("bias")
        if not self.training:
            y, _ = batch_norm_inference(
                x, self.buffers["running_mean"], self.buffers["running_var"], gamma, beta, self.eps
            )
            self._cache, self._eval_input = None, x if self.caching else None
            return y
        count = x.size // x.shape[1]
        if count < 2:
            raise self._fail(f"needs more than one value per channel in training, got {x.shape}")
        y, self._cache, mean, var = batch_norm_forward(x, gamma, beta, self.eps)
        self._eval_input = None
        # Running statistics as in PyTorch: exponential average, unbiased variance.
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1 - m
        running_mean += (m * mean).astype(running_mean.dtype, copy=False)
        running_var *= 1 - m
        running_var += (m * count / (count - 1) * var).astype(running_var.dtype, copy=False)
        self.buffers["num_batches_tracked"] += 1
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self._eval_input is not None:
            dx, dgamma, dbeta = batch_norm_inference_backward(
                dy,
                self._eval_input,
                self.buffers["running_mean"],
                self.buffers["running_var"],
                self.params.get("weight"),
                self.eps,
            )
        elif self._cache is None:
            raise self._fail("backward called without a forward pass in training mode")
        else:
            dx, dgamma, dbeta = batch_norm_backward(dy, self._cache)
        if self.affine:
            self.grads["weight"], self.grads["bias"] = dgamma, dbeta
        return dx

    def config(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
        }


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of (N, C) features (after a Dense layer)."""

    ndim = 2


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of (N, C, H, W) maps, one mean and variance per channel."""

    ndim = 4
