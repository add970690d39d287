"""Sequential: a chain of layers with PyTorch-style names, state dicts and a summary."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from . import parallel
from .functional import softmax
from .init import as_generator
from .layers import Layer, MaxPool2D, Parameter, ReLU, Softmax, layer_from_config
from .layers.fusion import forward_in_order
from .summary import summary


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
        kernels: str = "fast",
    ) -> None:
        """``kernels='reference'`` computes with the plain kernels of the article's way
        (``faltung.functional.reference``) instead of the fast ones: same numbers, slower."""
        items = layers.items() if isinstance(layers, Mapping) else layers
        self.layers: dict[str, Layer] = {}
        for index, item in enumerate(items):
            name, layer = item if isinstance(item, tuple) else (str(index), item)
            if not isinstance(layer, Layer):
                raise ValueError(f"layer {name!r} is a {type(layer).__name__}, not a Layer")
            if name in self.layers or "." in name or not name:
                raise ValueError(f"layer names must be unique, non-empty and dot-free: {name!r}")
            layer.name = name
            for full, inner in layer.named_layers(name + "."):
                inner.name = full  # errors inside a block name it: block1.body.conv1
            self.layers[name] = layer
        if not self.layers:
            raise ValueError("Sequential needs at least one layer")
        first = next(iter(self.layers.values()))
        first.needs_input_grad = False
        self.training, self.keep_cache = True, False
        self._order: list[Layer] = []  # the order of the last forward pass, for backward
        self._split: parallel.Split | None = None  # its shards, if split over threads
        self.use_kernels(kernels)
        if seed is not None:
            self.initialize(seed)

    # -- running -------------------------------------------------------------------------
    # Images per forward pass in eval mode: a chunk's activations stay in cache from one
    # layer to the next (inference keeps no state, so a large batch can be split).
    inference_chunk = 64

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Training mode: the whole batch at once, keeping what backward needs.

        Eval mode: chunks of ``inference_chunk`` images, concatenated, unless a layer inside
        mixes the batch (a batch norm left training takes the whole batch's statistics;
        ``Layer.mixes_batch``). In either mode a large batch is split over threads
        (``faltung.parallel``): the same result up to rounding, except that dropout draws
        its masks from one stream per shard.
        """
        count = self.shard_count(len(x)) if isinstance(x, np.ndarray) else 1
        if count > 1:
            return self._forward_split(x, count)
        self._split = None
        if self.keep_cache or len(x) <= self.inference_chunk or self._whole_batches():
            return self._forward(x)
        return np.concatenate(list(self._chunks(x, self.inference_chunk)))

    def _whole_batches(self) -> bool:
        """Whether a batch must run whole: in training, or when a layer mixes the batch."""
        return self.training or any(layer.mixes_batch for _, layer in self.named_layers())

    __call__ = forward

    def __getstate__(self) -> dict[str, Any]:
        # A copy (deepcopy, pickle) does not take the last pass's shards and their threads'
        # barrier along: they belong to the backward pass of this object only.
        return {**self.__dict__, "_split": None}

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self._order = self.run_order()
        return forward_in_order(self._order, x)

    def _chunks(self, x: np.ndarray, size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(x), size):
            yield self._forward(x[start : start + size])

    def shard_count(self, batch: int) -> int:
        """How many threads ``forward`` splits a batch of ``batch`` images over, in the
        current mode (1: not split; ``faltung.parallel``)."""
        count = parallel.shard_count(batch)
        if count == 1 or self.keep_cache:
            return 1
        return count if all(layer.shardable for layer in self.layers.values()) else 1

    def _forward_split(self, x: np.ndarray, count: int) -> np.ndarray:
        """``x`` in ``count`` shards on threads of their own; in training the shards keep
        what ``backward`` needs. In eval mode each shard runs in chunks, unless a layer
        inside mixes the batch (its statistics must come from one pass per shard)."""
        self._order, self._split = self.run_order(), None
        for _, layer in self.named_layers():  # backward goes through the shards' replicas
            layer.clear_cache()
        y, split = parallel.forward_split(
            self._order, x, count, len(x) if self._whole_batches() else self.inference_chunk
        )
        self._split = split if self.training else None
        return y

    def run_order(self) -> list[Layer]:
        """The order ``forward`` runs the layers in: as written, except that a ReLU directly
        before a max pooling runs after it, when both compute with the fast kernels.

        The result is the same, outputs and gradients, ties included: ReLU is monotone, so
        it commutes with taking a maximum (tested). After the pooling it touches a quarter
        of the data, so conv -> ReLU -> pool, the order most people write, trains as fast
        as conv -> pool -> ReLU. The reference kernels run exactly what is written: they
        are the oracle the fast order is checked against. ``forward_each`` runs the written
        order, for looking at each layer's own output. Only the model's own layers are
        reordered, not those inside a ``Residual`` block.
        """
        order = list(self.layers.values())
        for i in range(len(order) - 1):
            relu, pool = order[i], order[i + 1]
            if (
                type(relu) is ReLU
                and type(pool) is MaxPool2D
                and relu.kernels.name == pool.kernels.name == "fast"
            ):
                order[i], order[i + 1] = pool, relu
        return order

    def forward_each(self, x: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """(name, output) of every layer in turn, in the order written and in the current
        mode; ``backward`` afterwards follows the same order."""
        self._order, self._split = list(self.layers.values()), None
        for name, layer in self.layers.items():
            x = layer.forward(x)
            yield name, x

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        """Back-propagate ``dy`` through every layer, filling each layer's ``grads``, in the
        reverse of the order the last ``forward`` or ``forward_each`` ran them (the written
        order when the layers were run by hand)."""
        order, self._order = self._order or list(self.layers.values()), []
        split, self._split = self._split, None
        if split is not None:
            return parallel.backward_split(dy, order, split)
        for layer in reversed(order):
            dy = layer.backward(dy)
        return dy

    def iter_logits(self, x: np.ndarray, batch_size: int | None = None) -> Iterator[np.ndarray]:
        """The outputs for ``x`` in eval mode, ``batch_size`` images at a time (default:
        ``inference_chunk``), each batch through ``forward`` (which splits it over threads,
        and chunks it, when it is large)."""
        size = self.inference_chunk if batch_size is None else batch_size
        if size < 1:
            raise ValueError(f"batch_size must be positive, got {size}")
        with self.evaluating():
            for start in range(0, len(x), size):
                yield self.forward(x[start : start + size])

    @property
    def ends_in_softmax(self) -> bool:
        """Whether the last layer is a Softmax over the classes: the outputs are then
        probabilities already, and a cross-entropy that applies the softmax itself must be
        trained on ``before_softmax`` instead."""
        last = next(reversed(self.layers.values()))
        return isinstance(last, Softmax) and last.axis in (1, -1)

    def before_softmax(self) -> Sequential:
        """This model without its final Softmax: the same layer objects, so that training
        it trains this model. Cross-entropy on its outputs (logits) is cross-entropy on this
        model's probabilities, computed stably."""
        if not self.ends_in_softmax or len(self.layers) == 1:
            raise ValueError("before_softmax: the model must end in a Softmax after other layers")
        body = copy.copy(self)  # shares the layers; __getstate__ leaves the shards behind
        body.layers = dict(list(self.layers.items())[:-1])
        body._order = []
        return body

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Class probabilities from this model's outputs (N, K): the outputs themselves
        when the model ends in a Softmax layer, else their softmax."""
        return outputs if self.ends_in_softmax else softmax(outputs)

    def predict_proba(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities (``probabilities`` of the outputs), in eval mode."""
        return np.concatenate([self.probabilities(z) for z in self._outputs(x, batch_size)])

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Predicted class of each input, in eval mode."""
        return np.concatenate([z.argmax(axis=1) for z in self._outputs(x, batch_size)])

    def _outputs(self, x: np.ndarray, batch_size: int | None) -> list[np.ndarray]:
        outputs = list(self.iter_logits(x, batch_size))
        if not outputs:  # the output width of no images comes from one zero image
            outputs = [next(self.iter_logits(np.zeros((1, *np.shape(x)[1:]), np.float32)))[:0]]
        return outputs

    def train(self, mode: bool = True) -> Sequential:
        self.training, self.keep_cache = mode, False
        for layer in self.layers.values():
            layer.train(mode)
        return self

    def eval(self, keep_cache: bool = False) -> Sequential:
        """Inference behaviour; ``keep_cache=True`` still allows ``backward`` (in one
        forward pass, without chunking), for gradients of the function used at inference."""
        self.training, self.keep_cache = False, keep_cache
        for layer in self.layers.values():
            layer.eval(keep_cache)
        return self

    @contextlib.contextmanager
    def evaluating(self, keep_cache: bool = False) -> Iterator[Sequential]:
        """Eval mode (``eval(keep_cache)``) inside the block; afterwards the model and every
        layer in it are back in the mode each was in, so that a batch norm frozen with its
        own ``eval()`` inside a training model stays frozen, and ``keep_cache`` stays set."""
        modes = [(self, self.training, self.keep_cache)]
        modes += [(layer, layer.training, layer.keep_cache) for _, layer in self.named_layers()]
        self.eval(keep_cache)
        try:
            yield self
        finally:
            for owner, training, keep_cache_before in modes:
                owner.training, owner.keep_cache = training, keep_cache_before

    def use_kernels(self, name: str) -> Sequential:
        """Compute with the ``'fast'`` kernels or the article's plain ``'reference'`` ones."""
        for layer in self.layers.values():
            layer.use_kernels(name)
        return self

    # -- parameters and state ----------------------------------------------------------
    def initialize(self, seed: int | np.random.Generator) -> Sequential:
        """Redraw every parameter from one generator: the same seed gives the same model."""
        rng = as_generator(seed)
        for layer in self.layers.values():
            layer.reset_parameters(rng)
        return self

    def named_layers(self) -> Iterator[tuple[str, Layer]]:
        """Every layer, containers and the layers inside them, with dotted names
        (``block1``, ``block1.body``, ``block1.body.conv1``), depth first."""
        for name, layer in self.layers.items():
            yield name, layer
            yield from layer.named_layers(name + ".")

    def parameters(self) -> list[Parameter]:
        return [
            Parameter(f"{name}.{key}", layer, key)
            for name, layer in self.named_layers()
            for key in layer.params
        ]

    def num_parameters(self) -> int:
        return sum(p.value.size for p in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer by its dotted name, e.g. ``conv1.weight`` (copies)."""
        state: dict[str, np.ndarray] = {}
        for name, layer in self.named_layers():
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
        for name, layer in self.named_layers():
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
                layers.append((entry["name"], layer_from_config(entry)))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise ValueError(f"cannot rebuild layer from {entry!r}: {error}") from None
        return cls(layers)

    @classmethod
    def from_entries(cls, entries: list[dict[str, Any]], seed: int = 0) -> Sequential:
        """From a user's description (``faltung.netfile``): errors name the layer alone."""
        layers = [(entry["name"], layer_from_config(entry)) for entry in entries]
        return cls(layers, seed=seed)

    def summary(self, input_shape: tuple[int, ...]) -> str:
        """A table of each layer's output shape and parameter count (``faltung.summary``)."""
        return summary(self, input_shape)

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.layers.items())
        return f"Sequential(\n{inner}\n)"

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str | int) -> Layer:
        if isinstance(name, int):
            return list(self.layers.values())[name]
        return self.layers[name]
