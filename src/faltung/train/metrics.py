"""Evaluation in batches: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..functional import softmax_cross_entropy_forward
from ..model import Sequential


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray  # (K, K): rows are true classes, columns predictions

    @property
    def per_class_accuracy(self) -> np.ndarray:
        totals = self.confusion.sum(axis=1)
        return np.divide(
            np.diag(self.confusion), totals, out=np.zeros(len(totals)), where=totals > 0
        )


def evaluate(
    model: Sequential, images: np.ndarray, labels: np.ndarray, batch_size: int | None = None
) -> Evaluation:
    """Mean cross-entropy, accuracy and confusion matrix of ``model`` in eval mode."""
    if len(images) == 0:
        raise ValueError("cannot evaluate on an empty set")
    loss_sum, predictions = 0.0, []
    start = 0
    for logits in model.iter_logits(images, batch_size):
        batch_labels = labels[start : start + len(logits)]
        loss, _ = softmax_cross_entropy_forward(logits, batch_labels)
        loss_sum += loss * len(logits)
        predictions.append(logits.argmax(axis=1))
        start += len(logits)
    predicted = np.concatenate(predictions)
    k = max(int(labels.max()), int(predicted.max()), 9) + 1
    confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    return Evaluation(loss_sum / len(images), float(np.mean(predicted == labels)), confusion)
