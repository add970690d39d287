"""The preprocessing a model was trained behind, as a layer: for explanations in pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Layer


class Standardise(Layer):
    """x -> (x - mean) / std for each channel of (N, C, H, W) float images in [0, 1]; fixed.

    It lets a model be explained in the image's own pixels (``explain.in_pixels``); it is
    not saved with models, whose files record the standardisation in their metadata.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean {list(mean)} and std {list(std)}: one positive std per mean")
        self.buffers["mean"] = np.asarray(mean, np.float64).reshape(-1, 1, 1)
        self.buffers["std"] = np.asarray(std, np.float64).reshape(-1, 1, 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        channels = len(self.buffers["mean"])
        if x.ndim != 4 or x.shape[1] != channels or x.dtype.kind != "f":
            raise self._fail(
                f"expected float images (N, {channels}, H, W), got {x.dtype} {x.shape}"
            )
        mean, std = (self.buffers[key].astype(x.dtype, copy=False) for key in ("mean", "std"))
        return (x - mean) / std

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy / self.buffers["std"].astype(dy.dtype, copy=False)  # a fixed affine map

    def config(self) -> dict[str, Any]:
        return {key: self.buffers[key].ravel().tolist() for key in ("mean", "std")}
