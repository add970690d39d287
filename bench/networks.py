"""The benchmarked networks: each preset as defined, and as the textbooks write it.

The presets pool before each ReLU (``conv -> pool -> ReLU``); PyTorch's tutorials and the
article write ``conv -> ReLU -> pool``. Both orders compute the same function; the
benchmark measures both, so that neither hides the other's cost.
"""

from __future__ import annotations

from faltung.layers import MaxPool2D, ReLU
from faltung.model import Sequential
from faltung.presets import PRESETS

ORDERS = ("preset", "textbook")


def numpy_network(preset: str, order: str = "preset", seed: int = 0) -> Sequential:
    """The preset's network; with ``order='textbook'`` every ReLU that follows a max
    pooling moves in front of it (the same layers and weights, names kept)."""
    model = PRESETS[preset].build(seed)
    if order == "preset":
        return model
    if order != "textbook":
        raise ValueError(f"unknown layer order {order!r}; choose one of {ORDERS}")
    items = list(model.layers.items())
    for i in range(1, len(items)):
        if isinstance(items[i][1], ReLU) and isinstance(items[i - 1][1], MaxPool2D):
            items[i - 1], items[i] = items[i], items[i - 1]
    return Sequential(items)
