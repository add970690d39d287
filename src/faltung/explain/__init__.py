"""See inside a trained network: feature maps, filters and attributions.

Works for any ``Sequential`` with image input, grey or colour, of any size:

>>> import numpy as np
>>> from faltung import Sequential
>>> from faltung.layers import Conv2D, ReLU, Flatten, Dense
>>> from faltung.explain import activations, saliency, integrated_gradients
>>> model = Sequential([("conv", Conv2D(3, 4, 3)), ("relu", ReLU()), ("flat", Flatten()),
...                     ("fc", Dense(4 * 6 * 6, 5))], seed=0)
>>> image = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32)
>>> {name: a.shape for name, a in activations(model, image).items()}["relu"]
(4, 6, 6)
>>> saliency(model, image, target=2).shape
(3, 8, 8)
>>> ig = integrated_gradients(model, image, target=2, steps=64)
>>> logits = activations(model, np.stack([image, 0 * image]))["fc"][:, 2]
>>> bool(abs(ig.sum() - (logits[0] - logits[1])) < 1e-2 * abs(logits[0] - logits[1]))
True
"""

from .attributions import gradient_x_input, integrated_gradients, occlusion, saliency
from .backprop import class_gradients, eval_backprop
from .features import (
    ConvSum,
    activations,
    conv_layers,
    conv_sum,
    filters,
    predict_probabilities,
    probabilities,
    to_uint8,
)

__all__ = [
    "ConvSum",
    "activations",
    "class_gradients",
    "conv_layers",
    "conv_sum",
    "eval_backprop",
    "filters",
    "gradient_x_input",
    "integrated_gradients",
    "occlusion",
    "predict_probabilities",
    "probabilities",
    "saliency",
    "to_uint8",
]
