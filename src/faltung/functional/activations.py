"""Element-wise activations and softmax, each a pair ``op_forward(x) -> (y, cache)`` and
``op_backward(dy, cache) -> dx``.

Each cache is the one array the derivative needs, input or output, whichever makes it
cheapest; no backward writes into the incoming gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .layout import memory_runs


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = max(x, 0), in x's dtype. Cache: y (same shape), whose positive entries are the
    mask."""
    y = _maximum_with_zero(np.asarray(x))
    return y, y


# NumPy's maximum against a scalar has no SIMD loop, against an array it has one
# (bench/NOTES.md), so ReLU compares rows of ZERO_ROW values with a row of zeros. Setting
# that up costs about 10 us, which arrays of fewer than ZERO_ROWS_FROM values do not win
# back.
ZERO_ROW = 4096
ZERO_ROWS_FROM = 1 << 16


def _maximum_with_zero(x: np.ndarray) -> np.ndarray:
    """max(x, 0) in x's memory order: rows of ZERO_ROW values against a row of zeros, or
    against the scalar for a small array or one not contiguous in any order."""
    if x.size < ZERO_ROWS_FROM:
        return np.maximum(x, x.dtype.type(0))
    y = np.empty_like(x)
    runs = memory_runs(x, y)
    if runs is None:
        np.maximum(x, x.dtype.type(0), out=y)
        return y
    values, out = runs
    whole = values.size - values.size % ZERO_ROW
    zeros = np.zeros(min(ZERO_ROW, values.size), x.dtype)
    if whole:
        rows = (whole // ZERO_ROW, ZERO_ROW)
        np.maximum(values[:whole].reshape(rows), zeros, out=out[:whole].reshape(rows))
    tail = values.size - whole
    np.maximum(values[whole:], zeros[:tail], out=out[whole:])
    return y


def relu_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    # Subgradient 0 at x = 0, as in PyTorch. Multiplying by the boolean mask is several
    # times faster than np.where on large arrays.
    return dy * (cache > 0)


class LeakyReLUCache(NamedTuple):
    x: np.ndarray  # the input
    negative_slope: float


def leaky_relu_forward(
    x: np.ndarray, negative_slope: float = 0.01
) -> tuple[np.ndarray, LeakyReLUCache]:
    """y = x for x > 0, negative_slope * x otherwise."""
    return np.where(x > 0, x, x * negative_slope), LeakyReLUCache(x, negative_slope)


def leaky_relu_backward(dy: np.ndarray, cache: LeakyReLUCache) -> np.ndarray:
    return np.where(cache.x > 0, dy, dy * cache.negative_slope)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), exact in both limits.

    For x -> -inf, exp(-x) overflows to inf and 1/(1 + inf) is exactly 0; for x -> +inf,
    exp(-x) underflows to 0 and the result is exactly 1. The overflow is therefore harmless
    and only its warning is silenced; no NaN can arise. Computed in place in four passes.
    """
    y = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)
    return y


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = sigmoid(x). Cache: y, since sigmoid' = y * (1 - y)."""
    y = sigmoid(x)
    return y, y


def sigmoid_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    return dy * cache * (1 - cache)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y = tanh(x). Cache: y, since tanh' = 1 - y^2."""
    y = np.tanh(x)
    return y, y


def tanh_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    return dy * (1 - cache * cache)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / sum: shifting by the max keeps exp from overflowing."""
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    e /= e.sum(axis=axis, keepdims=True)
    return e


class SoftmaxCache(NamedTuple):
    y: np.ndarray  # the output probabilities
    axis: int


def softmax_forward(x: np.ndarray, axis: int = -1) -> tuple[np.ndarray, SoftmaxCache]:
    y = softmax(x, axis)
    return y, SoftmaxCache(y, axis)


def softmax_backward(dy: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    """dx = y * (dy - sum(dy * y)): the Jacobian diag(y) - y y^T applied to dy."""
    y, axis = cache
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x - logsumexp(x), with the log-sum-exp shifted by the max for stability."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
