"""Explanations in pixels: a model's recorded preprocessing run as its first layer.

A model trained on standardised pixels, (x - mean) / std per channel, sees those numbers,
not the image. Run behind :class:`~faltung.layers.standardise.Standardise`, every output,
gradient and baseline of an explanation is the image's own: saliency is d score / d pixel,
black is pixel 0 (the integrated-gradients baseline and the occlusion patch), and the
first picture of the layers shows what the network actually received.
"""

from __future__ import annotations

from ..datasets import Preprocessing
from ..layers.standardise import Standardise
from ..model import Sequential


def in_pixels(model: Sequential, preprocessing: Preprocessing) -> Sequential:
    """``model`` behind ``preprocessing``, as one Sequential of the same layer objects; the
    model itself when the preprocessing is the identity (pixels in [0, 1], as the article's).

    The model's layers are shared, not copied, and its first layer is no longer first: its
    input gradient is switched on, since attributions need it. The kernels stay the ones
    the first layer computes with.
    """
    if preprocessing.is_identity:
        return model
    name = "standardise"
    while name in model.layers:
        name += "_"
    first = next(iter(model.layers.values()))
    layers = [(name, Standardise(preprocessing.mean, preprocessing.std)), *model.layers.items()]
    wrapped = Sequential(layers, kernels=first.kernels.name)
    first.needs_input_grad = True
    wrapped.astype(model.dtype)
    # In the model's mode, leaving each of its layers in its own.
    for owner in (wrapped, wrapped.layers[name]):
        owner.training, owner.keep_cache = model.training, model.keep_cache
    return wrapped
