"""Evaluation in batches: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..distributed import Communicator
from ..functional import softmax_cross_entropy_forward
from ..model import Sequential

# A model that ends in Softmax outputs probabilities; their logarithms are scores whose
# softmax gives them back. A probability that underflowed to 0 counts as this one.
TINY = 1e-30


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
    model: Sequential,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int | None = None,
    num_classes: int | None = None,
    comm: Communicator | None = None,
) -> Evaluation:
    """Mean cross-entropy, accuracy and confusion matrix of ``model`` in eval mode.

    The confusion matrix has one row and column per class: ``num_classes``, by default the
    model's output width. With a ``comm`` of several ranks each rank scores its contiguous
    share of the images and one Allreduce sums the losses and confusion matrices, so every
    rank returns the result for the whole set.
    """
    if len(images) == 0:
        raise ValueError("cannot evaluate on an empty set")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if comm is not None and comm.size > 1:
        return _evaluate_sharded(model, images, labels, batch_size, num_classes, comm)
    loss_sum, predictions = 0.0, []
    start = 0
    for logits in model.iter_logits(images, batch_size):
        if start == 0:
            k = int(num_classes or logits.shape[1])
            if k < logits.shape[1]:
                raise ValueError(f"num_classes {k} is fewer than the model's {logits.shape[1]}")
            if labels.min() < 0 or labels.max() >= min(k, logits.shape[1]):
                raise ValueError(
                    f"labels {labels.min()}..{labels.max()} do not fit a model with "
                    f"{logits.shape[1]} outputs and {k} classes"
                )
        scores = np.log(np.maximum(logits, TINY)) if model.ends_in_softmax else logits
        loss, _ = softmax_cross_entropy_forward(scores, labels[start : start + len(logits)])
        loss_sum += loss * len(logits)
        predictions.append(logits.argmax(axis=1))
        start += len(logits)
    predicted = np.concatenate(predictions)
    confusion = np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
    return Evaluation(loss_sum / len(images), float(np.mean(predicted == labels)), confusion)


def _evaluate_sharded(model, images, labels, batch_size, num_classes, comm) -> Evaluation:
    (first,) = model.iter_logits(images[:1])
    k = int(num_classes or first.shape[1])
    part = comm.shard(np.arange(len(images)))
    totals = np.zeros(1 + k * k, np.float64)
    if len(part):
        local = evaluate(model, images[part], labels[part], batch_size, num_classes=k)
        totals[0] = local.loss * len(part)
        totals[1:] = local.confusion.ravel()
    comm.allreduce_(totals)
    confusion = totals[1:].round().astype(np.int64).reshape(k, k)
    return Evaluation(
        float(totals[0] / len(images)), float(np.trace(confusion) / len(images)), confusion
    )
