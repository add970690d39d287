"""Loss objects: ``forward(prediction, target) -> float`` then ``backward() -> dprediction``.

They check their arguments and call a kernel pair from ``faltung.functional`` (the fast
set, or the reference set with ``kernels="reference"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .functional import kernel_set


class Loss:
    def __init__(self, kernels: str = "fast") -> None:
        self.kernels = kernel_set(kernels)
        self._cache: Any = None

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def __call__(self, prediction: np.ndarray, target: np.ndarray) -> float:
        return self.forward(prediction, target)

    def backward(self, dloss: float = 1.0) -> np.ndarray:
        """Gradient of the last loss with respect to the prediction."""
        if self._cache is None:
            raise ValueError(f"{type(self).__name__}: backward called before forward")
        return self._backward(dloss, self._cache)

    def _backward(self, dloss: float, cache: Any) -> np.ndarray:
        raise NotImplementedError


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits) against labels, fused on the logits for stability.

    ``target`` is integer labels (N,) in [0, K) or probability rows (N, K) such as one-hot.
    The loss is the mean over the batch, as the article's cross-entropy.
    """

    def __init__(self, label_smoothing: float = 0.0, kernels: str = "fast") -> None:
        super().__init__(kernels)
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        target = np.asarray(target)
        if prediction.ndim != 2:
            raise ValueError(
                f"SoftmaxCrossEntropy: expected logits (N, K), got shape {prediction.shape}"
            )
        n, k = prediction.shape
        if target.ndim == 1:
            if target.shape[0] != n:
                raise ValueError(
                    f"SoftmaxCrossEntropy: {n} logits rows but {target.shape[0]} labels"
                )
            if not np.issubdtype(target.dtype, np.integer):
                raise ValueError(
                    f"SoftmaxCrossEntropy: labels must be integers, got {target.dtype}"
                )
            if target.size and (target.min() < 0 or target.max() >= k):
                raise ValueError(
                    f"SoftmaxCrossEntropy: labels must be in [0, {k}), "
                    f"got range [{target.min()}, {target.max()}]"
                )
        elif target.shape != prediction.shape:
            raise ValueError(
                f"SoftmaxCrossEntropy: targets {target.shape} do not match "
                f"logits {prediction.shape}"
            )
        loss, self._cache = self.kernels.softmax_cross_entropy_forward(
            prediction, target, self.label_smoothing
        )
        return loss

    def _backward(self, dloss: float, cache: Any) -> np.ndarray:
        return self.kernels.softmax_cross_entropy_backward(dloss, cache)


class MSELoss(Loss):
    """Mean squared error over every element (the article's squared error, averaged)."""

    def forward(self, prediction: np.ndarray, target: np.ndarray) -> float:
        target = np.asarray(target)
        if target.shape != prediction.shape:
            raise ValueError(f"MSELoss: target {target.shape} does not match {prediction.shape}")
        loss, self._cache = self.kernels.mse_forward(prediction, target)
        return loss

    def _backward(self, dloss: float, cache: Any) -> np.ndarray:
        return self.kernels.mse_backward(dloss, cache)
