"""Residual blocks (He et al., 2016): y = body(x) + shortcut(x).

``Residual`` is a container: its body and shortcut are chains of ordinary layers, named as
in PyTorch's state dicts (``block1.body.conv1.weight``). The addition is the only maths of
its own; its backward sends the same gradient down both paths and adds what comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .base import Layer
from .fusion import forward_in_order

LayerSpec = Layer | tuple[str, Layer] | Mapping[str, Any]


def layer_from_config(entry: Mapping[str, Any]) -> Layer:
    """Build one layer from ``{"type": ..., "args": {...}}`` (the format of model files)."""
    from . import ALIASES, LAYER_TYPES  # the registry imports this module

    name = entry.get("name", "?")
    kind = entry.get("type")
    kind = ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in LAYER_TYPES:
        raise ValueError(f"{name}: unknown layer type {kind!r}; known: {', '.join(LAYER_TYPES)}")
    args = dict(entry.get("args", {}))
    if "p" in args and isinstance(args["p"], str):  # LpPool2D's p = "inf" in JSON
        args["p"] = float(args["p"])
    try:
        return LAYER_TYPES[kind](**args)
    except TypeError as error:
        raise ValueError(f"{name}: {kind} {str(error).split(') ', 1)[-1]}") from None
    except ValueError as error:  # the layer's own check, which knows only its class name
        raise ValueError(f"{name}: {str(error).split(': ', 1)[-1]}") from None
    except MemoryError:
        raise ValueError(f"{name}: {kind}'s parameters do not fit in memory") from None


def trace_layers(
    layers: Mapping[str, Layer], x: np.ndarray, nested: bool = True
) -> Iterator[tuple[str, Layer, np.ndarray]]:
    """(name, layer, output) of ``layers`` run in turn on ``x``. With ``nested``, the layers
    inside a block (anything with a ``trace``) come first, with dotted names
    (``inner.body.conv``), then the block's own row."""
    for name, layer in layers.items():
        if nested and hasattr(layer, "trace"):
            for inner, child, y in layer.trace(x):
                yield f"{name}.{inner}", child, y
        x = layer.forward(x)
        yield name, layer, x


class _Container(Layer):
    """A layer made of layers. Whether it computes its input gradient (not as a network's
    first layer) is passed on to the layers inside that read its input."""

    def _input_layers(self) -> list[Layer]:
        raise NotImplementedError

    @property
    def needs_input_grad(self) -> bool:
        return self._needs_input_grad

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        self._needs_input_grad = value
        for layer in self._input_layers():
            layer.needs_input_grad = value


class Chain(_Container):
    """Layers applied in order inside a container (the body or shortcut of a block)."""

    def __init__(self, layers: Iterable[LayerSpec]) -> None:
        super().__init__()
        self.layers: dict[str, Layer] = {}
        for index, item in enumerate(layers):
            if isinstance(item, Mapping):
                name, layer = str(item.get("name", index)), layer_from_config(item)
            elif isinstance(item, tuple):
                name, layer = item
            else:
                name, layer = str(index), item
            if not isinstance(layer, Layer):
                raise ValueError(f"{name}: a {type(layer).__name__} is not a Layer")
            if name in self.layers or "." in name or not name:
                raise ValueError(f"layer names must be unique, non-empty and dot-free: {name!r}")
            layer.name = name
            self.layers[name] = layer
        if not self.layers:
            raise ValueError("a chain needs at least one layer")

    def _input_layers(self) -> list[Layer]:
        # The chain's input gradient is its first layer's; the others feed layers inside.
        layers = self.__dict__.get("layers")  # absent while Layer.__init__ runs
        return [next(iter(layers.values()))] if layers else []

    def children(self) -> dict[str, Layer]:
        return self.layers

    def replica(self) -> Chain:
        twin = super().replica()
        twin.layers = {name: layer.replica() for name, layer in self.layers.items()}
        return twin

    def reset_parameters(self, rng: np.random.Generator) -> None:
        for layer in self.layers.values():
            layer.reset_parameters(rng)

    def trace(self, x: np.ndarray) -> Iterator[tuple[str, Layer, np.ndarray]]:
        """(name, layer, output) of each layer in turn, nested blocks' layers included."""
        return trace_layers(self.layers, x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return forward_in_order(list(self.layers.values()), x)

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        for layer in reversed(self.layers.values()):
            dy = layer.backward(dy)
        return dy

    def config(self) -> dict[str, Any]:
        return {"layers": self.entries()}

    def entries(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "type": type(layer).__name__, "args": layer.config()}
            for name, layer in self.layers.items()
        ]


class Residual(_Container):
    """y = body(x) + shortcut(x); the shortcut is the identity unless given.

    ``body`` and ``shortcut`` are lists of layers, ``(name, layer)`` pairs or config
    entries (``{"name", "type", "args"}``). For a block that changes the shape, the
    shortcut is usually a 1x1 convolution with the body's stride (and a batch norm).

    >>> from faltung.layers import BatchNorm2D, Conv2D, ReLU
    >>> block = Residual([("conv1", Conv2D(8, 16, 3, stride=2, padding=1)),
    ...                   ("bn1", BatchNorm2D(16)), ("relu1", ReLU()),
    ...                   ("conv2", Conv2D(16, 16, 3, padding=1))],
    ...                  shortcut=[("conv", Conv2D(8, 16, 1, stride=2))])
    >>> block(np.zeros((2, 8, 14, 14), np.float32)).shape
    (2, 16, 7, 7)
    """

    def __init__(
        self,
        body: Iterable[LayerSpec],
        shortcut: Iterable[LayerSpec] | Layer | None = None,
    ) -> None:
        super().__init__()
        try:
            self.body = Chain(body)
            if isinstance(shortcut, Layer):
                shortcut = [shortcut]
            self.shortcut = None if shortcut is None else Chain(shortcut)
        except ValueError as error:
            raise self._fail(str(error)) from None
        self.needs_input_grad = self._needs_input_grad  # now that the branches exist

    def _input_layers(self) -> list[Layer]:
        # Both branches read the block's input (absent while Layer.__init__ runs).
        return list(self.children().values()) if "body" in self.__dict__ else []

    def children(self) -> dict[str, Layer]:
        found: dict[str, Layer] = {"body": self.body}
        if self.shortcut is not None:
            found["shortcut"] = self.shortcut
        return found

    def reset_parameters(self, rng: np.random.Generator) -> None:
        for child in self.children().values():
            child.reset_parameters(rng)

    def replica(self) -> Residual:
        twin = super().replica()
        twin.body = self.body.replica()
        twin.shortcut = None if self.shortcut is None else self.shortcut.replica()
        return twin

    def trace(self, x: np.ndarray) -> Iterator[tuple[str, Layer, np.ndarray]]:
        """(dotted name, layer, output) of every layer inside, then the sum."""
        y = x
        for name, layer, y in self.body.trace(x):
            yield f"body.{name}", layer, y
        short = x
        if self.shortcut is not None:
            for name, layer, short in self.shortcut.trace(x):
                yield f"shortcut.{name}", layer, short
        self._check(y, short)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not np.issubdtype(np.asarray(x).dtype, np.floating):
            x = np.asarray(x, np.float32)
        y = self.body.forward(x)
        short = x if self.shortcut is None else self.shortcut.forward(x)
        self._check(y, short)
        return y + short

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        dx = self.body.backward(dy)
        dshort = dy if self.shortcut is None else self.shortcut.backward(dy)
        if not self.needs_input_grad:  # the branches computed none
            return None
        return dx + dshort

    def _check(self, y: np.ndarray, short: np.ndarray) -> None:
        if y.shape != short.shape:
            where = "the input" if self.shortcut is None else "the shortcut"
            raise self._fail(
                f"body gives {tuple(y.shape[1:])} but {where} gives {tuple(short.shape[1:])}; "
                f"a block that changes the shape needs a shortcut such as a strided 1x1 Conv2D"
            )

    def config(self) -> dict[str, Any]:
        return {
            "body": self.body.entries(),
            "shortcut": None if self.shortcut is None else self.shortcut.entries(),
        }
