"""Two layers run as one in eval mode, by the containers that run layers in order.

A batch norm in eval mode is a fixed affine map per channel, so directly after a
convolution it folds into the convolution's weights and bias (``functional.norm.
fold_into_conv``): the map costs nothing, where the batch norm's own pass reads and writes
every activation once more. The layers stay as written; only forward passes that keep no
cache (inference) and compute with the fast kernels take the shortcut. ``forward_each``
and ``trace`` run each layer on its own, so every layer's output can still be looked at,
and the reference kernels run exactly what is written: they are the oracle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..functional.norm import fold_into_conv
from .base import Layer
from .conv import Conv2D
from .norm import _BatchNorm


def folds(conv: Layer, norm: Layer) -> bool:
    """Whether ``norm`` folds into ``conv``: a convolution and then batch norm over its
    output channels, both in eval mode without caches, on the fast kernels."""
    return (
        type(conv) is Conv2D
        and isinstance(norm, _BatchNorm)
        and norm.ndim == 4
        and norm.num_features == conv.out_channels
        and not (conv.caching or norm.caching)
        and conv.kernels.name == norm.kernels.name == "fast"
    )


def forward_in_order(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    """``x`` through ``layers`` one after another, a foldable pair as one convolution."""
    i = 0
    while i < len(layers):
        layer = layers[i]
        if i + 1 < len(layers) and folds(layer, layers[i + 1]):
            norm = layers[i + 1]
            weight, bias = fold_into_conv(
                layer.params["weight"],
                layer.params.get("bias"),
                norm.buffers["running_mean"],
                norm.buffers["running_var"],
                norm.params.get("weight"),
                norm.params.get("bias"),
                norm.eps,
            )
            x = layer.convolve(x, weight, bias)
            i += 2
        else:
            x = layer.forward(x)
            i += 1
    return x
