"""The Layer contract: parameters and their gradients in plain dicts, forward, backward.

A layer holds state; the maths lives in ``faltung.functional``, which it calls through
``self.kernels`` (the fast kernels unless the model asks for the reference ones).
``forward`` keeps the kernel's cache when training, and ``backward`` hands it back,
writing ``grads`` but never touching ``params``: optimisers do that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..functional import KernelSet, kernel_set
from ..functional.shapes import is_int


class Layer:
    """Base class. Subclasses fill ``params``/``grads`` (name -> ndarray) and ``buffers``
    (non-trainable state saved with the model, such as batch-norm running statistics)."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        # Eval-mode maths with caches kept, so that backward works (attributions, gradient
        # checks of eval mode); see ``eval``.
        self.keep_cache = False
        # The first layer of a network need not compute its input gradient; Sequential
        # switches this off there, which saves a whole col2im in the first convolution.
        self.needs_input_grad = True
        self.name = type(self).__name__
        self.kernels: KernelSet = kernel_set("fast")
        self._cache: Any = None

    @property
    def caching(self) -> bool:
        """Whether forward keeps what backward needs: in training, or in eval mode with
        ``keep_cache`` (attributions back-propagate through the eval-mode network)."""
        return self.training or self.keep_cache

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # -- a batch split over threads (faltung.parallel) ------------------------------------
    @property
    def mixes_batch(self) -> bool:
        """Whether this layer's output for one image depends on the others in its batch
        right now (batch norm while training): such a batch must not run in chunks. By
        default, a layer that may not be split (``shardable``) is taken to mix the batch;
        the layers inside a container are asked on their own (``Sequential`` walks them)."""
        return not self.children() and not self.shardable

    @property
    def shardable(self) -> bool:
        """Whether a batch may be split into shards that run this layer apart: yes by
        default, if the layers inside may be. A layer whose output mixes the batch's images
        says no (and so runs whole in eval mode too, ``mixes_batch``), or takes what it
        needs from every shard (``join_shards``); one that keeps state of its own beyond
        its cache and gradients gives its ``replica`` that state, as a container
        replicates the layers inside it."""
        children = self.children()
        if children and type(self).replica is Layer.replica:
            return False  # its replica would share the layers inside, caches and all
        return all(child.shardable for child in children.values())

    def join_shards(self, allreduce: Callable[[np.ndarray], np.ndarray], first: bool) -> None:
        """Told to a replica running one shard of a split batch: ``allreduce(buffer)`` sums
        a float64 buffer over the shards in place (every shard must call it alike), and
        ``first`` marks one shard of them. Only layers that need the whole batch use it."""
        for child in self.children().values():
            child.join_shards(allreduce, first)

    def replica(self) -> Layer:
        """A twin that runs one shard of a batch: the same parameters and buffers (shared,
        not copied), a cache and gradients of its own."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__, grads={}, _cache=None)
        return twin

    def children(self) -> dict[str, Layer]:
        """The layers inside this one, by name (containers such as ``Residual``; else none).

        Everything that walks a network (parameters, state dicts, train/eval, kernels,
        dtype, initialisation, summaries) recurses through this one method.
        """
        return {}

    def named_layers(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        """Every layer inside this one, depth first, with dotted names (``body.conv1``)."""
        for name, child in self.children().items():
            full = f"{prefix}{name}"
            yield full, child
            yield from child.named_layers(full + ".")

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        self.keep_cache = False
        for child in self.children().values():
            child.train(mode)
        return self

    def eval(self, keep_cache: bool = False) -> Layer:
        """Inference behaviour (dropout off, batch norm on running statistics). With
        ``keep_cache`` the forward pass still keeps what backward needs, so gradients of
        the eval-mode function can be taken, as attributions do."""
        self.train(False)
        self.keep_cache = keep_cache
        for child in self.children().values():
            child.eval(keep_cache)
        return self

    def use_kernels(self, name: str) -> Layer:
        """Compute with the ``'fast'`` (default) or the ``'reference'`` kernels."""
        self.kernels = kernel_set(name)
        for child in self.children().values():
            child.use_kernels(name)
        return self

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Draw fresh parameters from ``rng``; layers without parameters do nothing."""

    def config(self) -> dict[str, Any]:
        """Constructor arguments: enough to rebuild the layer (saved with every model)."""
        return {}

    def astype(self, dtype: np.dtype) -> Layer:
        for store in (self.params, self.grads):
            for key, value in store.items():
                store[key] = value.astype(dtype)
        for key, value in self.buffers.items():
            if np.issubdtype(value.dtype, np.floating):
                self.buffers[key] = value.astype(dtype)
        if hasattr(self, "dtype"):
            self.dtype = np.dtype(dtype)
        for child in self.children().values():
            child.astype(dtype)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- helpers shared by every layer --------------------------------------------------
    def _keep(self, cache: Any) -> None:
        """Keep a kernel's cache for backward: when training, or when asked in eval mode."""
        self._cache = cache if self.caching else None

    def clear_cache(self) -> None:
        """Forget the last forward pass's cache, for a layer whose forward pass another
        layer ran for it (``layers.fusion``): a backward pass must not use a stale one."""
        self._cache = None

    def _cached(self) -> Any:
        if self._cache is None:
            raise self._fail(
                "backward called without a forward pass in training mode "
                "(or in eval mode with keep_cache=True, as a layer frozen with eval() "
                "inside a training model needs)"
            )
        return self._cache

    def _store_grads(self, dweight: np.ndarray, dbias: np.ndarray | None) -> None:
        self.grads["weight"] = dweight
        if dbias is not None:
            self.grads["bias"] = dbias

    def _fail(self, message: str) -> ValueError:
        return ValueError(f"{self.name} ({type(self).__name__}): {message}")

    def _positive_int(self, value: Any, name: str) -> int:
        """``value`` as a Python int (NumPy's integers too, as ``np.prod(shape)`` gives),
        refusing floats and booleans, and counts below 1."""
        if not is_int(value):
            raise self._fail(f"{name} must be an integer, got {value!r}")
        if value < 1:
            raise self._fail(f"{name} must be positive, got {value}")
        return int(value)

    def _run(self, kernel: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        """Call a forward kernel and keep its cache; the kernel checks the arguments, and
        its errors come back naming this layer."""
        if not isinstance(x, np.ndarray):
            raise self._fail(f"expected a NumPy array, got {type(x).__name__}")
        if not np.issubdtype(x.dtype, np.floating):
            # Integer images become the layer's float dtype; float arrays keep their own.
            x = x.astype(getattr(self, "dtype", np.float32))
        try:
            y, cache = kernel(x, *args, **kwargs)
        except ValueError as error:
            raise self._fail(str(error)) from None
        self._keep(cache)
        return y


@dataclass(frozen=True)
class Parameter:
    """A named handle on ``owner.params[key]`` and its gradient ``owner.grads[key]``.

    Optimisers hold these, so they always see the arrays the layers currently hold.
    """

    name: str
    owner: Layer
    key: str

    @property
    def value(self) -> np.ndarray:
        return self.owner.params[self.key]

    @property
    def grad(self) -> np.ndarray | None:
        return self.owner.grads.get(self.key)
