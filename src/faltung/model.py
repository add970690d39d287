"""Sequential: a chain of layers with PyTorch-style names, state dicts and a summary."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from .functional.activations import softmax
from .init import as_generator
from .layers import LAYER_TYPES, Layer
from .optim import Parameter


class Sequential:
    """Layers applied in order. Names are '0', '1', ... or the ones you give.

    >>> from faltung.layers import Conv2D, ReLU, Flatten, Dense
    >>> model = Sequential([("conv1", Conv2D(1, 4, 3)), ("relu", ReLU()),
    ...                     ("flat", Flatten()), ("fc", Dense(4 * 26 * 26, 10))], seed=0)
    >>> model(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    >>> sorted(model.state_dict())
    ['conv1.bias', 'conv1.weight', 'fc.bias', 'fc.weight']
    """

    def __init__(
        self,
        layers: Iterable[Layer | tuple[str, Layer]] | Mapping[str, Layer],
        seed: int | np.random.Generator | None = None,
    ) -> None:
        items = layers.items() if isinstance(layers, Mapping) else layers
        self.layers: dict[str, Layer] = {}
        for index, item in enumerate(items):
            name, layer = item if isinstance(item, tuple) else (str(index), item)
            if not isinstance(layer, Layer):
                raise ValueError(f"layer {name!r} is a {type(layer).__name__}, not a Layer")
            if name in self.layers or "." in name or not name:
                raise ValueError(f"layer names must be unique, non-empty and dot-free: {name!r}")
            layer.name = name
            self.layers[name] = layer
        if not self.layers:
            raise ValueError("Sequential needs at least one layer")
        first = next(iter(self.layers.values()))
        first.needs_input_grad = False
        self.training = True
        if seed is not None:
            self.initialize(seed)

    # -- running -------------------------------------------------------------------------
    # In eval mode large batches run in chunks of this many images: each chunk's
    # activations stay in cache from one layer to the next (inference keeps no state).
    inference_chunk = 128

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training and len(x) > 2 * self.inference_chunk:
            step = self.inference_chunk
            return np.concatenate([self._forward(x[i : i + step]) for i in range(0, len(x), step)])
        return self._forward(x)

    __call__ = forward

    def _forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """Back-propagate ``dy`` through every layer, filling each layer's ``grads``."""
        for layer in reversed(self.layers.values()):
            dy = layer.backward(dy)
        return dy

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities (softmax of the logits), in eval mode and in batches."""
        return np.concatenate([softmax(logits) for logits in self.iter_logits(x, batch_size)])

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Predicted class of each input, computed in batches in eval mode."""
        return np.concatenate([logits.argmax(axis=1) for logits in self.iter_logits(x, batch_size)])

    def iter_logits(self, x: np.ndarray, batch_size: int = 1000) -> Iterator[np.ndarray]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(x), batch_size):
                yield self.forward(x[start : start + batch_size])
        finally:
            self.train(was_training)

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers.values():
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    # -- parameters and state ----------------------------------------------------------
    def initialize(self, seed: int | np.random.Generator) -> Sequential:
        """Redraw every parameter from one generator: the same seed gives the same model."""
        rng = as_generator(seed)
        for layer in self.layers.values():
            layer.reset_parameters(rng)
        return self

    def parameters(self) -> list[Parameter]:
        return [
            Parameter(f"{name}.{key}", layer, key)
            for name, layer in self.layers.items()
            for key in layer.params
        ]

    def num_parameters(self) -> int:
        return sum(p.value.size for p in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer by its dotted name, e.g. ``conv1.weight`` (copies)."""
        state: dict[str, np.ndarray] = {}
        for name, layer in self.layers.items():
            for store in (layer.params, layer.buffers):
                for key, value in store.items():
                    state[f"{name}.{key}"] = value.copy()
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy ``state`` into the model after checking every name, shape and dtype.

        ``strict`` (the default) demands exactly the model's names and dtypes; otherwise
        missing or extra names are skipped and floats convert to the model's precision.
        Nothing is changed unless the whole state passes the checks.
        """
        targets: dict[str, tuple[dict[str, np.ndarray], str]] = {}
        for name, layer in self.layers.items():
            for store in (layer.params, layer.buffers):
                for key in store:
                    targets[f"{name}.{key}"] = (store, key)
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        problems = []
        if strict and missing:
            problems.append(f"missing {missing}")
        if strict and unexpected:
            problems.append(f"unexpected {unexpected}")
        converted: dict[str, np.ndarray] = {}
        for full, (store, key) in targets.items():
            if full not in state:
                continue
            value, current = np.asarray(state[full]), store[key]
            if value.shape != current.shape:
                problems.append(
                    f"{full}: shape {value.shape} does not match the model's {current.shape}"
                )
            elif value.dtype != current.dtype if strict else value.dtype.kind != current.dtype.kind:
                problems.append(
                    f"{full}: dtype {value.dtype} does not match the model's {current.dtype}"
                )
            elif value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                problems.append(f"{full}: contains NaN or infinity")
            else:
                converted[full] = value.astype(current.dtype)
        if problems:
            raise ValueError("state_dict does not fit the model: " + "; ".join(problems))
        for full, value in converted.items():
            store, key = targets[full]
            store[key] = value

    @property
    def dtype(self) -> np.dtype:
        """The floating dtype of the parameters (float32 unless converted)."""
        return next((p.value.dtype for p in self.parameters()), np.dtype(np.float32))

    def astype(self, dtype: np.dtype) -> Sequential:
        for layer in self.layers.values():
            layer.astype(dtype)
            if hasattr(layer, "dtype"):
                layer.dtype = np.dtype(dtype)
        return self

    # -- architecture --------------------------------------------------------------------
    def config(self) -> list[dict[str, Any]]:
        """JSON-ready description of the architecture (saved in every model file)."""
        return [
            {"name": name, "type": type(layer).__name__, "args": layer.config()}
            for name, layer in self.layers.items()
        ]

    @classmethod
    def from_config(cls, config: list[dict[str, Any]]) -> Sequential:
        layers = []
        for entry in config:
            try:
                layer_type = LAYER_TYPES[entry["type"]]
                args = dict(entry.get("args", {}))
                if "p" in args and isinstance(args["p"], str):
                    args["p"] = float(args["p"])
                layers.append((entry["name"], layer_type(**args)))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"cannot rebuild layer from {entry!r}: {error}") from None
        return cls(layers)

    def dry_run(self, input_shape: tuple[int, ...]) -> Iterator[tuple[str, Layer, np.ndarray]]:
        """(name, layer, output) for one zero image through each layer, in eval mode."""
        was_training = self.training
        self.eval()
        x = np.zeros((1, *input_shape), np.float32)
        try:
            for name, layer in self.layers.items():
                x = layer.forward(x)
                yield name, layer, x
        finally:
            self.train(was_training)

    def summary(self, input_shape: tuple[int, ...]) -> str:
        """A table of each layer's output shape and parameter count, from a dry run."""
        rows = [("Layer", "Type", "Output shape", "Params")]
        for name, layer, y in self.dry_run(input_shape):
            count = sum(v.size for v in layer.params.values())
            rows.append((name, type(layer).__name__, _shape_text(y.shape), f"{count:,}"))
        total = self.num_parameters()
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        line = "-" * (sum(widths) + 6)
        text = [f"Input shape: {_shape_text((1, *input_shape))}", line]
        for i, row in enumerate(rows):
            text.append(
                "  ".join(
                    cell.ljust(w) if j < 3 else cell.rjust(w)
                    for j, (cell, w) in enumerate(zip(row, widths))
                )
            )
            if i == 0:
                text.append(line)
        nbytes = sum(p.value.nbytes for p in self.parameters())
        text += [line, f"Total parameters: {total:,} ({nbytes / 2**20:.2f} MiB)"]
        return "\n".join(text)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.layers.items())
        return f"Sequential(\n{inner}\n)"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str | int) -> Layer:
        if isinstance(name, int):
            return list(self.layers.values())[name]
        return self.layers[name]


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape[1:])]) + ")"


def count_flops(model: Sequential, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-add FLOPs (2 per MAC) per image for each Conv2D and Dense layer's forward."""
    from .layers import Conv2D, Dense

    flops: dict[str, int] = {}
    for name, layer, y in model.dry_run(input_shape):
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
