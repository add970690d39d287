"""Batch normalisation (Ioffe & Szegedy, 2015) over every axis but the channel axis.

Training mode normalises by the batch's statistics, so every output depends on every
input of its channel; eval mode uses fixed running statistics and is a per-channel
affine map. x is (N, C) or (N, C, H, W); statistics are per channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray  # the normalised input, x's shape
    inv_std: np.ndarray  # 1/sqrt(var + eps), (1, C) or (1, C, 1, 1)
    gamma: np.ndarray | None  # (C,) scale, None without affine parameters
    axes: tuple[int, ...]  # the reduced axes: (0,) or (0, 2, 3)
    mean: np.ndarray  # (C,) batch mean, for the running statistics
    var: np.ndarray  # (C,) biased batch variance, for the running statistics


def _broadcast_shape(ndim: int, channels: int) -> tuple[int, ...]:
    return (1, channels) + (1,) * (ndim - 2)


def batch_norm_forward(
    x: np.ndarray, gamma: np.ndarray | None, beta: np.ndarray | None, eps: float
) -> tuple[np.ndarray, BatchNormCache]:
    """y = gamma * (x - mu) / sqrt(var + eps) + beta with the batch's mean and variance."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = _broadcast_shape(x.ndim, x.shape[1])
    mean = x.mean(axis=axes, dtype=x.dtype)
    centred = x - mean.reshape(shape)
    var = np.mean(centred * centred, axis=axes, dtype=x.dtype)
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype, copy=False).reshape(shape)
    x_hat = centred * inv_std
    y = x_hat if gamma is None else x_hat * gamma.reshape(shape) + beta.reshape(shape)
    return y, BatchNormCache(x_hat, inv_std, gamma, axes, mean, var)


def batch_norm_backward(
    dy: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dx = inv_std/M * (M*g - sum(g) - x_hat*sum(g*x_hat)) with g = dy*gamma, per channel."""
    x_hat, inv_std, gamma, axes = cache[:4]
    count = x_hat.size // x_hat.shape[1]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    dx = _input_grad(dy, x_hat, inv_std, gamma, dbeta, dgamma, count)
    if gamma is None:
        return dx, None, None
    return dx, dgamma, dbeta


def _input_grad(
    dy: np.ndarray,
    x_hat: np.ndarray,
    inv_std: np.ndarray,
    gamma: np.ndarray | None,
    dy_sum: np.ndarray,
    dy_x_hat_sum: np.ndarray,
    count: int,
) -> np.ndarray:
    """dx from the per-channel sums of dy and dy*x_hat over ``count`` values, which are
    this batch's (batch norm) or every rank's (synchronised batch norm)."""
    shape = inv_std.shape
    g_sum, gx_sum = dy_sum, dy_x_hat_sum
    if gamma is not None:
        dy = dy * gamma.reshape(shape)
        g_sum, gx_sum = dy_sum * gamma, dy_x_hat_sum * gamma
    return (dy - (g_sum.reshape(shape) + x_hat * gx_sum.reshape(shape)) * (1.0 / count)) * inv_std


class BatchNormInferenceCache(NamedTuple):
    x_hat: np.ndarray  # the input normalised by the running statistics
    scale: np.ndarray  # (1, C[, 1, 1]): gamma / sqrt(running_var + eps)
    has_affine: bool
    axes: tuple[int, ...]


def batch_norm_inference_forward(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, BatchNormInferenceCache]:
    """Eval mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta."""
    shape = _broadcast_shape(x.ndim, x.shape[1])
    inv_std = (1 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False).reshape(shape)
    x_hat = (x - running_mean.astype(x.dtype, copy=False).reshape(shape)) * inv_std
    scale = inv_std if gamma is None else inv_std * gamma.reshape(shape)
    y = x_hat if gamma is None else x_hat * gamma.reshape(shape) + beta.reshape(shape)
    axes = (0,) + tuple(range(2, x.ndim))
    return y, BatchNormInferenceCache(x_hat, scale, gamma is not None, axes)


def batch_norm_inference_backward(
    dy: np.ndarray, cache: BatchNormInferenceCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A per-channel affine map: dx = dy * scale, dgamma = sum(dy * x_hat), dbeta = sum(dy)."""
    x_hat, scale, has_affine, axes = cache
    dx = dy * scale
    if not has_affine:
        return dx, None, None
    return dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)


def fold_into_conv(
    weight: np.ndarray,
    bias: np.ndarray | None,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of one convolution equal to a convolution followed by eval-mode batch
    norm over its output channels.

    Eval mode is a fixed affine map per channel, y = s * (conv(x) + b - mean) + beta with
    s = gamma / sqrt(var + eps), and a convolution is linear in its weights:
    W' = s * W (each output channel's filter scaled), b' = s * (b - mean) + beta.
    Computed in float64, returned in the weight's dtype.
    """
    scale = 1 / np.sqrt(running_var.astype(np.float64) + eps)
    if gamma is not None:
        scale = scale * gamma
    mean = running_mean.astype(np.float64)
    shift = (-mean if bias is None else bias - mean) * scale
    if beta is not None:
        shift = shift + beta
    folded = weight * scale.reshape(-1, *(1,) * (weight.ndim - 1))
    return folded.astype(weight.dtype), shift.astype(weight.dtype)


class SyncBatchNormCache(NamedTuple):
    x_hat: np.ndarray
    inv_std: np.ndarray
    gamma: np.ndarray | None
    axes: tuple[int, ...]
    mean: np.ndarray  # (C,) mean over every rank's batch
    var: np.ndarray  # (C,) biased variance over every rank's batch
    count: int  # values per channel over every rank's batch
    allreduce: Callable[[np.ndarray], np.ndarray]


def sync_batch_norm_forward(
    x: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
    allreduce: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, SyncBatchNormCache]:
    """Batch norm whose statistics span the batches of every rank (data-parallel training).

    ``allreduce(buffer)`` sums a float64 buffer over the ranks in place. One call carries the
    count, sum(x) and sum(x^2) per channel; in float64, var = E[x^2] - mean^2 keeps float32's
    precision for activations whose mean is not far larger than their spread.
    """
    axes = (0,) + tuple(range(2, x.ndim))
    shape = _broadcast_shape(x.ndim, x.shape[1])
    channels = x.shape[1]
    sums = np.empty(1 + 2 * channels, np.float64)
    sums[0] = x.size // channels
    sums[1 : 1 + channels] = x.sum(axis=axes, dtype=np.float64)
    flat = x.reshape(len(x), channels, -1)
    sums[1 + channels :] = np.einsum("ncs,ncs->c", flat, flat, dtype=np.float64)
    allreduce(sums)
    count = int(sums[0])
    mean64 = sums[1 : 1 + channels] / count
    var64 = np.maximum(sums[1 + channels :] / count - mean64 * mean64, 0)
    mean, var = mean64.astype(x.dtype), var64.astype(x.dtype)
    inv_std = (1 / np.sqrt(var64 + eps)).astype(x.dtype).reshape(shape)
    x_hat = (x - mean.reshape(shape)) * inv_std
    y = x_hat if gamma is None else x_hat * gamma.reshape(shape) + beta.reshape(shape)
    return y, SyncBatchNormCache(x_hat, inv_std, gamma, axes, mean, var, count, allreduce)


def sync_batch_norm_backward(
    dy: np.ndarray, cache: SyncBatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``batch_norm_backward``'s formula with sum(g) and sum(g*x_hat) over every rank (one
    Allreduce). dgamma and dbeta stay this rank's parts: the gradient reduction adds them."""
    x_hat, inv_std, gamma, axes, *_, count, allreduce = cache
    channels = x_hat.shape[1]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    sums = np.concatenate([dbeta, dgamma]).astype(np.float64)
    allreduce(sums)
    g_sum, gx_sum = sums[:channels].astype(dy.dtype), sums[channels:].astype(dy.dtype)
    dx = _input_grad(dy, x_hat, inv_std, gamma, g_sum, gx_sum, count)
    if gamma is None:
        return dx, None, None
    return dx, dgamma, dbeta
