"""Batch normalisation (Ioffe & Szegedy, 2015) over every axis but the channel axis."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray
    inv_std: np.ndarray  # broadcastable to x
    gamma: np.ndarray | None
    axes: tuple[int, ...]


def _broadcast_shape(ndim: int, channels: int) -> tuple[int, ...]:
    return (1, channels) + (1,) * (ndim - 2)


def batch_norm_forward(
    x: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, BatchNormCache, np.ndarray, np.ndarray]:
    """Normalise by batch statistics: y = gamma * (x - mu) / sqrt(var + eps) + beta.

    x is (N, C) or (N, C, H, W); statistics are per channel over N (and H, W).
    Returns (y, cache, batch mean, biased batch variance).
    """
    axes = (0,) + tuple(range(2, x.ndim))
    shape = _broadcast_shape(x.ndim, x.shape[1])
    mean = x.mean(axis=axes, dtype=x.dtype)
    centred = x - mean.reshape(shape)
    var = np.mean(centred * centred, axis=axes, dtype=x.dtype)
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype, copy=False).reshape(shape)
    x_hat = centred * inv_std
    y = x_hat if gamma is None else x_hat * gamma.reshape(shape) + beta.reshape(shape)
    return y, BatchNormCache(x_hat, inv_std, gamma, axes), mean, var


def batch_norm_backward(
    dy: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dx = inv_std/M * (M*g - sum(g) - x_hat*sum(g*x_hat)) with g = dy*gamma, per channel."""
    x_hat, inv_std, gamma, axes = cache
    shape = inv_std.shape
    count = x_hat.size // x_hat.shape[1]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    g_sum, gx_sum = dbeta, dgamma
    if gamma is not None:
        dy = dy * gamma.reshape(shape)
        g_sum, gx_sum = dbeta * gamma, dgamma * gamma
    dx = (dy - (g_sum.reshape(shape) + x_hat * gx_sum.reshape(shape)) * (1.0 / count)) * inv_std
    if gamma is None:
        return dx, None, None
    return dx, dgamma, dbeta


def batch_norm_inference(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode normalisation with the running statistics; returns (y, per-channel scale)."""
    shape = _broadcast_shape(x.ndim, x.shape[1])
    scale = (1 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)
    shift = -running_mean * scale
    if gamma is not None:
        scale = scale * gamma
        shift = shift * gamma + beta
    return x * scale.reshape(shape) + shift.reshape(shape).astype(x.dtype, copy=False), scale


def batch_norm_inference_backward(
    dy: np.ndarray,
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None,
    eps: float,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Eval mode is a per-channel affine map of x: dx = dy * gamma / sqrt(var + eps),
    dgamma = sum(dy * x_hat), dbeta = sum(dy), with x_hat = (x - mean) / sqrt(var + eps)."""
    shape = _broadcast_shape(x.ndim, x.shape[1])
    axes = (0,) + tuple(range(2, x.ndim))
    inv_std = (1 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)
    scale = inv_std if gamma is None else inv_std * gamma
    dx = dy * scale.reshape(shape)
    if gamma is None:
        return dx, None, None
    x_hat = (x - running_mean.reshape(shape)) * inv_std.reshape(shape)
    return dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)
