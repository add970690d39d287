"""Pure array kernels: no state, no parameters (those live in ``faltung.layers``).

Every op is a pair ``op_forward(...) -> (y, cache)`` and ``op_backward(dy, cache)``, which
returns dx, or ``(dx, *parameter_gradients)`` for ops with parameters. Caches hold what
the backward pass needs (their shapes are documented where they are defined); a backward
never writes into ``dy``.

Two kernel sets share these names:

- ``faltung.functional.reference``: the article's way, written to be read: image patches
  and ``np.tensordot``, the Lp pooling formula, plain dense layers and softmax. Start here.
- this package (``"fast"``, the default): the same numbers, computed for speed
  (``conv``, ``pool`` and their ``*_fast`` specialisations, ``norm_fast``), tested against
  the reference.

``kernel_set(name)`` returns either, for ``Sequential(..., kernels=name)``.
"""

from __future__ import annotations

import sys
from types import ModuleType

from . import reference
from .activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .conv import conv2d_backward, conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .losses import (
    mse_backward,
    mse_forward,
    one_hot,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from .norm_fast import (
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_inference_backward,
    batch_norm_inference_forward,
)
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    lp_pool2d_backward,
    lp_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

# The (forward, backward) pairs every kernel set provides; layers call only these.
KERNEL_OPS = (
    "avg_pool2d",
    "batch_norm",
    "batch_norm_inference",
    "conv2d",
    "dropout",
    "global_avg_pool2d",
    "leaky_relu",
    "linear",
    "lp_pool2d",
    "max_pool2d",
    "mse",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
)


class KernelSet:
    """The ``<op>_forward``/``<op>_backward`` functions of one kernel set, as attributes.

    Layers hold one and call ``self.kernels.conv2d_forward(...)``. It is shared, never
    copied: copying a model keeps the same set, and pickling stores only its name.
    """

    def __init__(self, name: str, source: ModuleType) -> None:
        self.name = name
        for op in KERNEL_OPS:
            for direction in ("forward", "backward"):
                function = f"{op}_{direction}"
                setattr(self, function, getattr(source, function))

    def __deepcopy__(self, memo: dict) -> KernelSet:
        return self

    def __reduce__(self) -> tuple:
        return kernel_set, (self.name,)

    def __repr__(self) -> str:
        return f"kernel_set({self.name!r})"


_KERNEL_SETS: dict[str, KernelSet] = {}


def kernel_set(name: str = "fast") -> KernelSet:
    """``'fast'`` (this package) or ``'reference'`` (the article's way), for the layers."""
    if name not in _KERNEL_SETS:
        sources = {"fast": sys.modules[__name__], "reference": reference}
        if name not in sources:
            raise ValueError(f"unknown kernel set {name!r}; choose 'fast' or 'reference'")
        _KERNEL_SETS[name] = KernelSet(name, sources[name])
    return _KERNEL_SETS[name]


__all__ = [
    "KERNEL_OPS",
    "KernelSet",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_inference_backward",
    "batch_norm_inference_forward",
    "conv2d_backward",
    "conv2d_forward",
    "dropout_backward",
    "dropout_forward",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "kernel_set",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "linear_backward",
    "linear_forward",
    "log_softmax",
    "lp_pool2d_backward",
    "lp_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mse_backward",
    "mse_forward",
    "one_hot",
    "reference",
    "relu_backward",
    "relu_forward",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "softmax_forward",
    "tanh_backward",
    "tanh_forward",
]
