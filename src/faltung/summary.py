"""What a model computes, without training it: output shapes, parameters and FLOPs.

Everything comes from one dry run of a single zero image through the layers, so it holds
for any layer list the engine supports.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .layers import Conv2D, Dense, Layer
from .layers.residual import trace_layers

if TYPE_CHECKING:
    from .model import Sequential


def dry_run(
    model: Sequential, input_shape: tuple[int, ...], nested: bool = False
) -> Iterator[tuple[str, Layer, np.ndarray]]:
    """(name, layer, output) for one zero image through each layer, in eval mode.

    With ``nested``, the layers inside a container (``Residual``) come before the
    container's own row, with dotted names (``block1.body.conv1``).
    """
    with model.evaluating():
        yield from trace_layers(model.layers, np.zeros((1, *input_shape), model.dtype), nested)


def count_flops(model: Sequential, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-add FLOPs (2 per MAC) per image for each Conv2D and Dense layer's forward,
    those inside residual blocks included."""
    flops: dict[str, int] = {}
    for name, layer, y in dry_run(model, input_shape, nested=True):
        if isinstance(layer, Conv2D):
            flops[name] = 2 * math.prod(layer.params["weight"].shape[1:]) * y.size
        elif isinstance(layer, Dense):
            flops[name] = 2 * layer.in_features * layer.out_features
    return flops


def training_step_flops(flops: dict[str, int]) -> int:
    """FLOPs per image of a training step, from :func:`count_flops`.

    Backward costs two forwards (input and weight gradients), less the first layer's input
    gradient, which nobody needs.
    """
    return 3 * sum(flops.values()) - next(iter(flops.values()), 0)


def summary(model: Sequential, input_shape: tuple[int, ...]) -> str:
    """A table of each layer's output shape and parameter count, from a dry run."""
    rows = [("Layer", "Type", "Output shape", "Params")]
    for name, layer, y in dry_run(model, input_shape, nested=True):
        inside = [child for _, child in layer.named_layers()]
        count = sum(v.size for each in (layer, *inside) for v in each.params.values())
        indent = "  " * (name.count(".") // 2)
        rows.append((indent + name, type(layer).__name__, _shape_text(y.shape), f"{count:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    line = "-" * (sum(widths) + 6)
    text = [f"Input shape: {_shape_text((1, *input_shape))}", line]
    for i, row in enumerate(rows):
        cells = [
            cell.ljust(w) if j < 3 else cell.rjust(w)
            for j, (cell, w) in enumerate(zip(row, widths))
        ]
        text.append("  ".join(cells))
        if i == 0:
            text.append(line)
    nbytes = sum(p.value.nbytes for p in model.parameters())
    text += [line, f"Total parameters: {model.num_parameters():,} ({nbytes / 2**20:.2f} MiB)"]
    return "\n".join(text)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape[1:])]) + ")"
