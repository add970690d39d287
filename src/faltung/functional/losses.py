"""Loss kernels: ``op_forward(prediction, target) -> (loss, cache)`` and
``op_backward(dloss, cache) -> dprediction``.

``dloss`` is the upstream gradient of the scalar loss, 1.0 when the loss is the end of
the graph.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import log_softmax


def one_hot(labels: np.ndarray, num_classes: int, dtype: np.dtype = np.float32) -> np.ndarray:
    out = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


class CrossEntropyCache(NamedTuple):
    log_probs: np.ndarray  # (N, K) log softmax of the logits
    target_probs: np.ndarray  # (N, K) target distribution (one-hot, possibly smoothed)


def softmax_cross_entropy_forward(
    logits: np.ndarray, targets: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, CrossEntropyCache]:
    """Mean over the batch of -sum_k t_k log softmax(z)_k, computed through log-softmax.

    ``targets`` are integer class labels (N,) or per-class probabilities (N, K) such as
    one-hot rows.
    """
    k = logits.shape[1]
    if targets.ndim == 1:
        target_probs = one_hot(targets, k, logits.dtype)
    else:
        target_probs = targets.astype(logits.dtype, copy=False)
    if label_smoothing:
        target_probs = target_probs * (1 - label_smoothing) + label_smoothing / k
    log_probs = log_softmax(logits)
    # 0 * log 0 counts 0: a class with no target weight adds nothing, even at a logit of
    # -inf (a masked class), where the product would be NaN.
    terms = np.zeros_like(log_probs)
    np.multiply(target_probs, log_probs, out=terms, where=target_probs != 0)
    loss = -float(np.sum(terms)) / len(logits)
    return loss, CrossEntropyCache(log_probs, target_probs)


def softmax_cross_entropy_backward(dloss: float, cache: CrossEntropyCache) -> np.ndarray:
    """dlogits = dloss * (softmax(z) - t) / N."""
    log_probs, target_probs = cache
    scale = np.asarray(dloss / len(log_probs), log_probs.dtype)
    return (np.exp(log_probs) - target_probs) * scale


class MSECache(NamedTuple):
    diff: np.ndarray  # prediction - target, the prediction's shape


def mse_forward(prediction: np.ndarray, target: np.ndarray) -> tuple[float, MSECache]:
    """mean((y - t)^2) over every element (PyTorch's MSELoss)."""
    diff = prediction - target.astype(prediction.dtype, copy=False)
    return float(np.mean(diff * diff)), MSECache(diff)


def mse_backward(dloss: float, cache: MSECache) -> np.ndarray:
    diff = cache.diff
    return diff * np.asarray(2.0 * dloss / diff.size, diff.dtype)
