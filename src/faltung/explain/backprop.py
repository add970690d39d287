"""Back-propagation through a network in eval mode, for attributions and statistics.

Training mode would draw dropout masks and normalise by batch statistics; an explanation
must describe the network as it predicts. ``eval_backprop`` keeps eval-mode maths but asks
every layer to save what its own ``backward`` needs (``Layer.retain_cache``), and turns on
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
    layers = list(model.layers.values())
    saved = [(layer.training, layer.retain_cache, layer.needs_input_grad) for layer in layers]
    grads = [dict(layer.grads) for layer in layers]
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.retain_cache = True
    layers[0].needs_input_grad = input_grad or saved[0][2]
    try:
        yield model
    finally:
        for layer, (training, retain, needs), old in zip(layers, saved, grads):
            layer.training, layer.retain_cache, layer.needs_input_grad = training, retain, needs
            layer.grads.clear()
            layer.grads.update(old)
        model.training = was_training


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
            out = forward_layers(model, chunk)
            seed = np.zeros_like(out)
            seed[np.arange(len(chunk)), targets[start : start + batch_size]] = 1
            grads.append(model.backward(seed))
            scores.append(out)
    return np.concatenate(grads), np.concatenate(scores)


def forward_layers(model: Sequential, x: np.ndarray) -> np.ndarray:
    """Every layer in turn on the whole batch (``Sequential.forward`` may split large eval
    batches into chunks, after which the caches would describe only the last one)."""
    for layer in model.layers.values():
        x = layer.forward(x)
    return x
