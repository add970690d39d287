"""Explanations in pixels: a model's recorded preprocessing run as its first layer.

A model trained on standardised pixels, (x - mean) / std per channel, sees those numbers,
not the image. Run behind :class:`Standardise`, every output, gradient and baseline of an
explanation is the image's own: saliency is d score / d pixel, black is pixel 0 (the
integrated-gradients baseline and the occlusion patch), and the first picture of the
layers shows what the network actually received.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..layers import Layer
from ..model import Sequential


class Standardise(Layer):
    """x -> (x - mean) / std for each channel of (N, C, H, W) images in [0, 1]; fixed."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean {list(mean)} and std {list(std)}: one positive std per mean")
        self.buffers["mean"] = np.asarray(mean, np.float64).reshape(-1, 1, 1)
        self.buffers["std"] = np.asarray(std, np.float64).reshape(-1, 1, 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4 or x.shape[1] != len(self.buffers["mean"]):
            raise self._fail(f"expected (N, {len(self.buffers['mean'])}, H, W), got {x.shape}")
        if x.dtype.kind != "f":
            x = x.astype(self.buffers["mean"].dtype)
        mean, std = (self.buffers[k].astype(x.dtype, copy=False) for k in ("mean", "std"))
        return (x - mean) / std

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy / self.buffers["std"].astype(dy.dtype, copy=False)  # a fixed affine map

    def config(self) -> dict:
        return {"mean": self.buffers["mean"].ravel().tolist(),
                "std": self.buffers["std"].ravel().tolist()}  # fmt: skip


def in_pixels(model: Sequential, mean: Sequence[float], std: Sequence[float]) -> Sequential:
    """``model`` behind its preprocessing, as one Sequential of the same layer objects; the
    model itself when the preprocessing is the identity (pixels in [0, 1], as the article's).

    The model's first layer is no longer first: its input gradient is switched on, since
    attributions need it.
    """
    if all(m == 0 for m in mean) and all(s == 1 for s in std):
        return model
    name = "standardise"
    while name in model.layers:
        name += "_"
    first = next(iter(model.layers.values()))
    wrapped = Sequential([(name, Standardise(mean, std)), *model.layers.items()])
    first.needs_input_grad = True
    wrapped.astype(model.dtype)
    return wrapped.train(model.training)
