"""The mistakes a model is surest of: where to look first when it fails."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import Sequential
from .features import predict_probabilities


@dataclass
class Mistakes:
    index: np.ndarray  # positions in the evaluated set, most confident first
    true: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray  # of the predicted (wrong) class
    total: int  # the misclassified images in all; ``index`` holds the first ``count``


def confident_mistakes(
    model: Sequential, images: np.ndarray, labels: np.ndarray, count: int | None = None
) -> Mistakes:
    """The misclassified images, sorted by the probability given to the wrong class."""
    return rank_mistakes(predict_probabilities(model, images), labels, count)


def rank_mistakes(
    probabilities: np.ndarray, labels: np.ndarray, count: int | None = None
) -> Mistakes:
    """:func:`confident_mistakes` from the class probabilities (N, K) already computed."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:count]
    return Mistakes(
        order, labels[order], predicted[order], probabilities[order, predicted[order]], len(wrong)
    )
