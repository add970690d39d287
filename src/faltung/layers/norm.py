"""Batch normalisation layers: statistics per channel, running averages for eval mode."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..distributed import Communicator, world
from ..functional.norm import (
    SyncBatchNormCache,
    sync_batch_norm_backward,
    sync_batch_norm_forward,
)
from .base import Layer


class _Shard(NamedTuple):
    allreduce: Callable[[np.ndarray], np.ndarray]  # sums over the shards, in place
    first: bool


class _BatchNorm(Layer):
    ndim = 0

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        dtype: np.dtype = np.float32,
    ) -> None:
        super().__init__()
        num_features = self._positive_int(num_features, "num_features")
        if momentum is not None and not 0 <= momentum <= 1:
            raise self._fail(f"momentum must be in [0, 1] or None, got {momentum}")
        if not 0 < eps < math.inf:  # it keeps 1 / sqrt(var + eps) finite
            raise self._fail(f"eps must be positive and finite, got {eps}")
        self.num_features, self.eps, self.affine = num_features, float(eps), affine
        # None: the running statistics are the plain average of every batch so far.
        self.momentum = None if momentum is None else float(momentum)
        self.dtype = np.dtype(dtype)
        self._inference = False  # whether the cache is eval mode's (set by forward)
        self._shard: _Shard | None = None  # set on a replica running one shard
        self.reset_parameters(np.random.default_rng(0))

    def reset_parameters(self, rng: np.random.Generator) -> None:
        if self.affine:
            self.params["weight"] = np.ones(self.num_features, self.dtype)
            self.params["bias"] = np.zeros(self.num_features, self.dtype)
        self.buffers["running_mean"] = np.zeros(self.num_features, self.dtype)
        self.buffers["running_var"] = np.ones(self.num_features, self.dtype)
        self.buffers["num_batches_tracked"] = np.zeros((), np.int64)

    def forward(self, x: np.ndarray) -> np.ndarray:
        layout = "(N, C)" if self.ndim == 2 else "(N, C, H, W)"
        if not isinstance(x, np.ndarray) or x.ndim != self.ndim:
            raise self._fail(f"expected input {layout}, got shape {np.shape(x)}")
        if x.shape[1] != self.num_features:
            raise self._fail(f"expected {self.num_features} input channels, got shape {x.shape}")
        gamma, beta = self.params.get("weight"), self.params.get("bias")
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        self._inference = not self.training
        if not self.training:
            return self._run(
                self.kernels.batch_norm_inference_forward,
                x, running_mean, running_var, gamma, beta, self.eps,
            )  # fmt: skip
        y, count = self._normalise(x, gamma, beta)
        if self._shard is not None and not self._shard.first:
            return y  # the shared running statistics move once, in the first shard
        # Running statistics as in PyTorch: exponential average (or, with momentum None,
        # the cumulative one: batch k weighs 1/k), unbiased variance.
        self.buffers["num_batches_tracked"] += 1
        m = self.momentum
        if m is None:
            m = 1 / int(self.buffers["num_batches_tracked"])
        mean, var = self._cache.mean, self._cache.var
        running_mean *= 1 - m
        running_mean += (m * mean).astype(running_mean.dtype, copy=False)
        running_var *= 1 - m
        running_var += (m * count / (count - 1) * var).astype(running_var.dtype, copy=False)
        return y

    @property
    def mixes_batch(self) -> bool:
        return self.training  # the batch's own statistics

    @property
    def shardable(self) -> bool:
        # A split batch's statistics come from every shard (join_shards) with the fast
        # kernel; the reference kernels run the batch whole, as written.
        return not self.training or self.kernels.name == "fast"

    def join_shards(self, allreduce: Callable[[np.ndarray], np.ndarray], first: bool) -> None:
        self._shard = _Shard(allreduce, first)

    def _normalise(self, x: np.ndarray, gamma, beta) -> tuple[np.ndarray, int]:
        """Training mode: the output, and how many values per channel the statistics saw
        (over every shard, when the batch is split)."""
        if self._shard is not None:
            kernel = self.kernels.batch_norm_forward
            y = self._run(kernel, x, gamma, beta, self.eps, allreduce=self._shard.allreduce)
            return y, self._cache.count
        count = x.size // x.shape[1]
        if count < 2:
            raise self._fail(f"needs more than one value per channel in training, got {x.shape}")
        return self._run(self.kernels.batch_norm_forward, x, gamma, beta, self.eps), count

    def backward(self, dy: np.ndarray) -> np.ndarray:
        cache = self._cached()
        if self._inference:
            backward = self.kernels.batch_norm_inference_backward
        elif isinstance(cache, SyncBatchNormCache):
            backward = sync_batch_norm_backward
        else:
            backward = self.kernels.batch_norm_backward
        dx, dgamma, dbeta = backward(dy, cache)
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


class _SyncBatchNorm(_BatchNorm):
    """Statistics over the batches of every rank of a data-parallel run (PyTorch's
    SyncBatchNorm): training behaves as one process with the whole global batch would.

    ``process_group``: the ``faltung.distributed`` communicator, by default ``world()``
    (a single process outside mpiexec, where this is plain batch norm). Two small
    Allreduces per layer and step: the statistics forward, two sums backward. In eval
    mode, with the running statistics, nothing is exchanged.
    """

    def __init__(self, *args: Any, process_group: Communicator | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    @property
    def shardable(self) -> bool:
        return not self.training  # its training statistics span ranks, not threads

    def _normalise(self, x: np.ndarray, gamma, beta) -> tuple[np.ndarray, int]:
        group = self.process_group or world()
        y = self._run(sync_batch_norm_forward, x, gamma, beta, self.eps, group.allreduce_)
        if self._cache.count < 2:
            raise self._fail(f"needs more than one value per channel in training, got {x.shape}")
        return y, self._cache.count

    @classmethod
    def from_batch_norm(cls, layer: _BatchNorm, process_group: Communicator | None = None):
        """The synchronised twin of ``layer``, with its parameters and running statistics."""
        twin = cls(**layer.config(), dtype=layer.dtype, process_group=process_group)
        twin.params = {k: v.copy() for k, v in layer.params.items()}
        twin.buffers = {k: v.copy() for k, v in layer.buffers.items()}
        twin.name, twin.kernels = layer.name, layer.kernels
        return twin


class SyncBatchNorm1D(_SyncBatchNorm):
    """``BatchNorm1D`` with statistics over every rank's batch."""

    ndim = 2


class SyncBatchNorm2D(_SyncBatchNorm):
    """``BatchNorm2D`` with statistics over every rank's batch."""

    ndim = 4
