"""Numerical gradient checking: central differences in float64 against backward().

For users as much as for our tests: wrap any layer, loss or model and see the worst
relative error of its analytic gradients (input and every parameter).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .layers.base import Layer
from .losses import Loss
from .model import Sequential


@dataclass
class GradcheckResult:
    """Per-tensor relative errors: max|analytic - numeric| / max(max|analytic|, max|numeric|,
    the central differences' rounding noise / tolerance) (``relative_error``).

    It passes when the worst of them is at most ``tolerance``; printed, it says so first.
    """

    errors: dict[str, float] = field(default_factory=dict)
    tolerance: float = 1e-6

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def worst(self) -> str:
        return max(self.errors, key=self.errors.__getitem__) if self.errors else ""

    def passed(self, tolerance: float | None = None) -> bool:
        """Whether every error is within ``tolerance`` (default: the result's own)."""
        return self.max_error <= (self.tolerance if tolerance is None else tolerance)

    @property
    def ok(self) -> bool:
        return self.passed()

    @property
    def verdict(self) -> str:
        return (
            f"gradcheck {'passed' if self.ok else 'FAILED'}: max relative error "
            f"{self.max_error:.1e} (tolerance {self.tolerance:.0e}) in {self.worst or '-'}"
        )

    def __str__(self) -> str:
        lines = [f"  {name:<24} {err:.2e}" for name, err in self.errors.items()]
        return "\n".join([self.verdict, *lines])

    def __repr__(self) -> str:
        return f"<GradcheckResult {self.verdict}>"


# Central differences carry an absolute error: f's rounding over eps, the same for every
# tensor of one check. A tensor whose true gradient is zero (a convolution's bias before a
# batch norm) would show that noise as a relative error near 1, so each error is taken
# relative to noise / tolerance at least: noise alone fails nothing, and any gradient
# resolvable above the noise is still checked. The rounding of f is estimated to first
# order from the network's outputs y and df/dy (a few ulps of |f| and of the root sum of
# squares of y * df/dy); rounding inside the network that the outputs do not show
# (cancellation in a batch norm) is not counted.
ROUNDING_ULPS = 10


def rounding_noise(value: float, out: np.ndarray, dout: np.ndarray, eps: float) -> float:
    """Absolute error of a central difference of f = ``value``, whose outputs ``out`` have
    the gradient ``dout``."""
    magnitude = abs(value) + float(np.sqrt(np.sum((out * dout) ** 2)))
    return ROUNDING_ULPS * float(np.finfo(np.float64).eps) * magnitude / eps


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = 0.0) -> float:
    """max|analytic - numeric| / max(max|analytic|, max|numeric|, floor); 0 when both are
    zero to rounding."""
    scale = max(_scale(analytic), _scale(numeric), floor)
    if scale < 1e-12:  # both gradients are zero to rounding: nothing to disagree about
        return 0.0
    return float(np.abs(analytic - numeric).max()) / scale


def _scale(gradient: np.ndarray) -> float:
    return float(np.abs(gradient).max(initial=0))


def numerical_gradient(f: Callable[[], float], array: np.ndarray, eps: float) -> np.ndarray:
    """d f / d array by central differences, perturbing ``array`` in place one entry at a time.

    Indexes ``array`` itself (not a flattened copy), so any memory layout works.
    """
    grad = np.zeros(array.shape, dtype=array.dtype)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = f()
        array[index] = saved - eps
        minus = f()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def _layers_of(target: Layer | Sequential) -> list[tuple[str, Layer]]:
    """Every layer, nested ones included, with the prefix its parameters are named by."""
    if isinstance(target, Sequential):
        return [(f"{name}.", layer) for name, layer in target.named_layers()]
    return [("", target)] + [(f"{name}.", layer) for name, layer in target.named_layers()]


def gradcheck(
    target: Layer | Sequential | Loss,
    x: np.ndarray,
    labels: np.ndarray | None = None,
    loss: Loss | None = None,
    eps: float = 1e-6,
    seed: int = 0,
    tolerance: float = 1e-6,
) -> GradcheckResult:
    """Compare analytic and numerical gradients of ``target`` at input ``x``.

    - A Layer or Sequential is reduced to a scalar by ``loss(output, labels)`` when a loss
      is given, else by a fixed random projection sum(output * R), so every output
      element contributes with its own weight.
    - A Loss is checked with respect to its prediction ``x`` against ``labels``.

    Work happens on a float64 deep copy: ``target`` itself is left untouched. Layers that
    draw random numbers (dropout) replay the same draws for every evaluation. The result
    passes when every relative error is at most ``tolerance``.

    >>> from faltung.layers import Conv2D
    >>> result = gradcheck(Conv2D(2, 3, 3, padding=1, rng=0), np.random.rand(2, 2, 5, 5))
    >>> result.ok
    True
    >>> result  # doctest: +ELLIPSIS
    <GradcheckResult gradcheck passed: max relative error ... (tolerance 1e-06) in ...>
    """
    x = np.array(x, dtype=np.float64)
    if isinstance(target, Loss):
        if labels is None:
            raise ValueError("gradcheck of a loss needs labels")
        loss_copy = copy.deepcopy(target)

        def evaluate_loss() -> float:
            return loss_copy.forward(x, labels)

        evaluate_loss()
        analytic = loss_copy.backward().copy()
        return GradcheckResult(
            {"input": relative_error(analytic, numerical_gradient(evaluate_loss, x, eps))},
            tolerance,
        )

    model = copy.deepcopy(target).astype(np.float64)
    layers = _layers_of(model)
    for _, layer in layers:
        layer.needs_input_grad = True
    rng_states = [
        (layer, layer.rng.bit_generator.state) for _, layer in layers if hasattr(layer, "rng")
    ]
    loss = copy.deepcopy(loss)
    projection: np.ndarray | None = None
    out: np.ndarray | None = None  # the last evaluation's outputs

    def evaluate() -> float:
        nonlocal projection, out
        for layer, state in rng_states:
            layer.rng.bit_generator.state = state
        out = model.forward(x)
        if loss is not None:
            return loss.forward(out, labels)
        if projection is None:
            projection = np.random.default_rng(seed).standard_normal(out.shape)
        return float(np.sum(out * projection))

    f0 = evaluate()
    dy = loss.backward() if loss is not None else projection
    floor = rounding_noise(f0, out, dy, eps) / tolerance
    dx = model.backward(dy)
    pairs = {"input": (dx, numerical_gradient(evaluate, x, eps))}
    for prefix, layer in layers:
        analytic_grads = {key: g.copy() for key, g in layer.grads.items()}
        for key, value in layer.params.items():
            # A gradient that backward never wrote counts as zero, and fails where it is not.
            analytic = analytic_grads.get(key, np.zeros_like(value))
            pairs[prefix + key] = (analytic, numerical_gradient(evaluate, value, eps))
    errors = {name: relative_error(a, n, floor) for name, (a, n) in pairs.items()}
    return GradcheckResult(errors, tolerance)
