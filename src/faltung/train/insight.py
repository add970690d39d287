"""Training insight: what every layer does, epoch by epoch.

Per layer and epoch: the mean and standard deviation of its output, the fraction of ReLU
outputs that are exactly zero (dead or silent units), the fraction of sigmoid outputs
saturated above 0.99 or below 0.01 (where its derivative y(1 - y) < 0.01 and gradients
vanish: the article's sigmoid layer), and the norm of its parameters' gradient.

All of it is measured on one fixed probe batch of training images at the end of each
epoch, in eval mode (no dropout masks drawn, no batch-norm statistics updated, so training
and exact resume are untouched). The fields go into the history rows as
``<layer>.mean``, ``<layer>.std``, ``<layer>.zero_frac``, ``<layer>.saturated`` and
``<layer>.grad_norm``, plus ``insight_seconds``, the time it took.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..explain.backprop import eval_backprop
from ..layers import Dropout, Flatten, Identity, ReLU, Sigmoid
from .callbacks import Callback

if TYPE_CHECKING:
    from .trainer import Trainer

STATISTICS = ("mean", "std", "zero_frac", "saturated", "grad_norm")
# In eval mode these output the numbers of the layer before (reshaped at most): skipped.
REPEATS = (Dropout, Flatten, Identity)


class LayerStatistics(Callback):
    """Adds per-layer statistics of a fixed probe batch to every epoch's history row."""

    def __init__(self, probe_size: int = 128, seed: int = 0) -> None:
        self.probe_size, self.seed = probe_size, seed
        self._probe: tuple[np.ndarray, np.ndarray] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        # Its own generator: the trainer's shuffling stream must not move.
        n = len(trainer.images)
        index = np.sort(np.random.default_rng(self.seed).permutation(n)[: self.probe_size])
        self._probe = trainer.images[index], trainer.labels[index]

    def on_epoch_record(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        if self._probe is None:
            self.on_train_begin(trainer)
        started = time.perf_counter()
        row.update(layer_statistics(trainer, *self._probe))
        row["insight_seconds"] = round(time.perf_counter() - started, 4)


def layer_statistics(trainer: Trainer, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The statistics of one forward and backward pass of ``images`` through the model, as
    the trainer trains it (a final Softmax left to the loss: ``Trainer.trained``)."""
    model, loss = trainer.trained, trainer.loss
    stats: dict[str, float] = {}
    with eval_backprop(model, input_grad=False):
        for name, y in model.forward_each(images):
            layer = model.layers[name]
            if not isinstance(layer, REPEATS):
                stats[f"{name}.mean"] = float(np.mean(y, dtype=np.float64))
                stats[f"{name}.std"] = float(np.std(y, dtype=np.float64))
                if isinstance(layer, ReLU):
                    stats[f"{name}.zero_frac"] = float(np.count_nonzero(y == 0) / y.size)
                if isinstance(layer, Sigmoid):
                    saturated = np.count_nonzero((y > 0.99) | (y < 0.01))
                    stats[f"{name}.saturated"] = float(saturated / y.size)
        loss.forward(y, labels)
        model.backward(loss.backward())
        # Parameters inside residual blocks belong to the layers within: name those.
        for name, layer in model.named_layers():
            if layer.grads:
                squares = sum(float(np.vdot(g, g)) for g in layer.grads.values())
                stats[f"{name}.grad_norm"] = math.sqrt(squares)
    return {key: round(value, 6) for key, value in stats.items()}
