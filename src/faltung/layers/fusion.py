"""Two layers run as one in eval mode, by the containers that run layers in order.

A batch norm in eval mode is a fixed affine map per channel, so directly after a
convolution it folds into the convolution's weights and bias (``functional.norm.
fold_into_conv``): the map costs nothing, where the batch norm's own pass reads and writes
every activation once more. The layers stay as written; only forward passes that keep no
cache (inference), compute with the fast kernels and in one dtype take the shortcut, and
only for the library's own Conv2D and batch norm classes, not for subclasses or layers
whose ``forward`` was replaced. A model's ``forward_each`` runs its own layers one at a
time, and a residual block's ``trace`` the layers inside it; the reference kernels run
exactly what is written: they are the oracle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..functional.norm import fold_into_conv
from .base import Layer
from .conv import Conv2D
from .norm import BatchNorm2D, SyncBatchNorm2D


def folds(conv: Layer, norm: Layer, x: np.ndarray) -> bool:
    """Whether ``norm`` folds into ``conv`` for input ``x``: a convolution and then batch
    norm over its output channels, both in eval mode without caches, on the fast kernels,
    input, weights and statistics in one dtype."""
    return (
        isinstance(x, np.ndarray)
        and type(conv) is Conv2D
        and type(norm) in (BatchNorm2D, SyncBatchNorm2D)
        and not any("forward" in vars(layer) for layer in (conv, norm))
        and norm.num_features == conv.out_channels
        and not (conv.caching or norm.caching)
        and conv.kernels.name == norm.kernels.name == "fast"
        and x.dtype == conv.params["weight"].dtype == norm.buffers["running_mean"].dtype
    )


def forward_in_order(layers: Sequence[Layer], x: np.ndarray) -> np.ndarray:
    """``x`` through ``layers`` one after another, a foldable pair as one convolution."""
    i = 0
    while i < len(layers):
        layer = layers[i]
        if i + 1 < len(layers) and folds(layer, layers[i + 1], x):
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
            x = layer._conv_forward(x, weight, bias)
            norm.clear_cache()
            i += 2
        else:
            x = layer.forward(x)
            i += 1
    return x
