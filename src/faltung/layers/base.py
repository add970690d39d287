"""The Layer contract: parameters and their gradients in plain dicts, forward, backward.

A layer holds state; the maths lives in ``faltung.functional``. ``forward`` saves exactly
what ``backward`` needs, and ``backward`` writes ``grads`` but never touches ``params``:
optimisers do that.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Layer:
    """Base class. Subclasses fill ``params``/``grads`` (name -> ndarray) and ``buffers``
    (non-trainable state saved with the model, such as batch-norm running statistics)."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        # The first layer of a network need not compute its input gradient; Sequential
        # switches this off there, which saves a whole col2im in the first convolution.
        self.needs_input_grad = True
        # Attributions (faltung.explain) back-propagate through a network in eval mode:
        # while this is set, forward keeps what backward needs even outside training.
        self.retain_cache = False
        self.name = type(self).__name__

    @property
    def caching(self) -> bool:
        """Whether forward saves what backward needs: in training, or when asked to."""
        return self.training or self.retain_cache

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

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
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # -- input validation, shared by every layer --------------------------------------
    def _fail(self, message: str) -> ValueError:
        return ValueError(f"{self.name} ({type(self).__name__}): {message}")

    def _check_input(self, x: np.ndarray, ndim: int, channels: int | None = None) -> None:
        layout = {2: "(N, C)", 4: "(N, C, H, W)"}.get(ndim, f"{ndim} dimensions")
        if not isinstance(x, np.ndarray):
            raise self._fail(f"expected a NumPy array, got {type(x).__name__}")
        if x.ndim != ndim:
            raise self._fail(f"expected input {layout}, got shape {x.shape}")
        if channels is not None and x.shape[1] != channels:
            what = "features" if ndim == 2 else "channels"
            raise self._fail(f"expected {channels} input {what}, got shape {x.shape}")
        if x.shape[0] == 0:
            raise self._fail(f"empty batch, got shape {x.shape}")


def floating(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Integer images become the layer's float dtype; float arrays keep their own."""
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(dtype)
