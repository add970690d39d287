"""Loading a model file with its metadata and the shape of the images it takes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..io import load_model
from ..layers import Conv2D, Dense
from ..model import Sequential


def load_with_metadata(path: str | os.PathLike[str]) -> tuple[Sequential, dict[str, Any]]:
    """(model in eval mode, the metadata saved with it)."""
    loaded = load_model(path)
    # load_model returns (model, metadata) in newer versions and a model with a
    # ``metadata`` attribute in older ones; accept both.
    if isinstance(loaded, tuple):
        model, metadata = loaded
    else:
        model, metadata = loaded, getattr(loaded, "metadata", {})
    return model.eval(), dict(metadata or {})


def image_shape(model: Sequential, metadata: dict[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) the model takes: from its metadata, else the smallest square that fits."""
    shape = metadata.get("input_shape")
    if isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) for v in shape):
        return shape[0], shape[1], shape[2]
    first = next(iter(model.layers.values()))
    channels = first.in_channels if isinstance(first, Conv2D) else 1
    dense = next((layer for layer in model.layers.values() if isinstance(layer, Dense)), None)
    for side in (28, 32, *range(1, 257)):
        try:
            *_, (_, _, y) = model.dry_run((channels, side, side))
        except ValueError:
            continue
        if dense is None or y.ndim == 2:
            return channels, side, side
    raise ValueError(f"cannot tell what image size the model takes (first layer {first!r})")


def class_names(metadata: dict[str, Any], count: int) -> list[str]:
    names = metadata.get("classes")
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return [str(i) for i in range(count)]


def output_count(model: Sequential, shape: tuple[int, int, int]) -> int:
    *_, (_, _, y) = model.dry_run(shape)
    return int(np.prod(y.shape[1:]))
