"""Back-propagation through a network in eval mode, for attributions and statistics.

Training mode would draw dropout masks and normalise by batch statistics; an explanation
must describe the network as it predicts. ``eval_backprop`` keeps eval-mode maths but asks
every layer to save what its own ``backward`` needs (``eval(keep_cache=True)``), and turns on
the first layer's input gradient, which ``Sequential`` switches off for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..model import Sequential


@contextmanager
def eval_backprop(model: Sequential, input_grad: bool = True) -> Iterator[Sequential]:
    """Eval-mode forward passes that ``model.backward`` can follow; restores everything after.

    ``input_grad`` makes backward return the gradient with respect to the input.

    Parameter gradients computed inside are restored on exit too, so that explaining a
    model in the middle of a training step changes nothing the optimiser will read.
    """
    first = next(iter(model.layers.values()))
    first_needs_input_grad = first.needs_input_grad
    # Every layer, those inside residual blocks too: their gradients are overwritten here.
    layers = [layer for _, layer in model.named_layers()]
    grads = [dict(layer.grads) for layer in layers]
    first.needs_input_grad = input_grad or first_needs_input_grad
    try:
        with model.evaluating(keep_cache=True):
            yield model
    finally:
        first.needs_input_grad = first_needs_input_grad
        for layer, old in zip(layers, grads):
            layer.grads.clear()
            layer.grads.update(old)


def class_gradients(
    model: Sequential, x: np.ndarray, targets: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(d score[target] / d x, scores) for a batch ``x`` (N, C, H, W), in eval mode.

    The score is the model's output for the class: the logit for the presets (their softmax
    lives in the loss), the probability for a model that ends in a Softmax layer. The
    gradient is ``model.backward`` of a one-hot upstream gradient.
    """
    targets = np.broadcast_to(np.asarray(targets, dtype=np.int64), (len(x),))
    grads, scores = [], []
    with eval_backprop(model):
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            out = model.forward(chunk)  # eval with keep_cache: one pass, never chunked
            seed = np.zeros_like(out)
            seed[np.arange(len(chunk)), targets[start : start + batch_size]] = 1
            grads.append(model.backward(seed))
            scores.append(out)
    return np.concatenate(grads), np.concatenate(scores)
