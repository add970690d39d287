"""Loss kernels: fused softmax cross-entropy on logits, and mean squared error."""

from __future__ import annotations

import numpy as np

from .activations import log_softmax


def one_hot(labels: np.ndarray, num_classes: int, dtype: np.dtype = np.float32) -> np.ndarray:
    out = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def softmax_cross_entropy(
    logits: np.ndarray, targets: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Mean over the batch of -sum_k t_k log softmax(z)_k, computed through log-softmax.

    ``targets`` are integer class labels (N,) or per-class probabilities (N, K) such as
    one-hot rows. Returns (loss, dlogits); the gradient is (softmax(z) - t) / N.
    """
    n, k = logits.shape
    if targets.ndim == 1:
        target_probs = one_hot(targets, k, logits.dtype)
    else:
        target_probs = targets.astype(logits.dtype, copy=False)
    if label_smoothing:
        target_probs = target_probs * (1 - label_smoothing) + label_smoothing / k
    log_probs = log_softmax(logits)
    loss = -float(np.sum(target_probs * log_probs)) / n
    dlogits = (np.exp(log_probs) - target_probs) * (1.0 / n)
    return loss, dlogits.astype(logits.dtype, copy=False)


def mean_squared_error(prediction: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """mean((y - t)^2) over every element (PyTorch's MSELoss); returns (loss, dprediction)."""
    diff = prediction - target.astype(prediction.dtype, copy=False)
    loss = float(np.mean(diff * diff))
    return loss, diff * (2.0 / diff.size)
