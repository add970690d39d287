"""Optimisers. They read each parameter's gradient and update the parameter in place.

Each takes the model's ``parameters()``: named references into the layers' ``params`` and
``grads`` dicts, so that the optimiser always sees the arrays the layers currently hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .layers import Parameter


class Optimizer:
    """Base class: holds the parameters, the learning rate and per-parameter state."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got no parameters to optimise")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: lr must be positive, got {lr}")
        self.lr = float(lr)
        self.steps = 0
        self.state: dict[str, dict[str, np.ndarray]] = {p.name: {} for p in self.params}

    def step(self) -> None:
        self.steps += 1
        for p in self.params:
            grad = p.grad
            if grad is not None:
                self._update(p.value, grad, self.state[p.name])

    def _update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _slot(self, state: dict[str, np.ndarray], name: str, like: np.ndarray) -> np.ndarray:
        if name not in state:
            state[name] = np.zeros_like(like)
        return state[name]

    # -- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Flat dict of arrays (``<param>.<slot>``) plus scalars, ready for a .npz file."""
        out: dict[str, Any] = {"steps": np.asarray(self.steps), "lr": np.asarray(self.lr)}
        for name, slots in self.state.items():
            for slot, array in slots.items():
                if slot != "scratch":  # workspace, not state
                    out[f"{name}.{slot}"] = array
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        by_name = {p.name: p for p in self.params}
        new_state: dict[str, dict[str, np.ndarray]] = {name: {} for name in by_name}
        for key, array in state.items():
            if key in ("steps", "lr"):
                continue
            name, _, slot = key.rpartition(".")
            if name not in by_name:
                raise ValueError(f"optimiser state names unknown parameter {name!r}")
            if array.shape != by_name[name].value.shape:
                raise ValueError(
                    f"optimiser state {key!r} has shape {array.shape}, "
                    f"parameter has {by_name[name].value.shape}"
                )
            new_state[name][slot] = np.array(array, dtype=by_name[name].value.dtype)
        self.state = new_state
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])


class SGD(Optimizer):
    """SGD with momentum, Nesterov momentum and L2 weight decay, as PyTorch defines them.

    g <- g + weight_decay * w   (the article's L2 term: d/dw of lambda/2 * ||w||^2)
    v <- momentum * v + g;  w <- w - lr * (g + momentum * v if nesterov else v)
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("SGD: momentum and weight_decay must be non-negative")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov needs a positive momentum")
        self.momentum, self.nesterov, self.weight_decay = (
            float(momentum),
            nesterov,
            float(weight_decay),
        )

    def _update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray]) -> None:
        # In place, through one scratch buffer per parameter: fresh temporaries the size of
        # the weights would cost more than the arithmetic at small batch sizes.
        scratch = self._slot(state, "scratch", value)
        if not self.momentum:
            # w <- w - lr*(g + wd*w) = w*(1 - lr*wd) - lr*g: three passes over memory.
            if self.weight_decay:
                value *= 1 - self.lr * self.weight_decay
            np.multiply(grad, self.lr, out=scratch)
            value -= scratch
            return
        if self.weight_decay:
            np.multiply(value, self.weight_decay, out=scratch)
            scratch += grad
        else:
            np.copyto(scratch, grad)
        velocity = self._slot(state, "momentum", value)
        velocity *= self.momentum
        velocity += scratch
        if self.nesterov:
            scratch += self.momentum * velocity
        else:
            np.copyto(scratch, velocity)
        scratch *= self.lr
        value -= scratch


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction; ``weight_decay`` is the coupled L2 term."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _decay(self, value: np.ndarray, grad: np.ndarray) -> np.ndarray:
        return grad + self.weight_decay * value if self.weight_decay else grad

    def _update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray]) -> None:
        grad = self._decay(value, grad)
        beta1, beta2 = self.betas
        m, v = self._slot(state, "exp_avg", value), self._slot(state, "exp_avg_sq", value)
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        # w -= lr * m_hat / (sqrt(v_hat) + eps), with the corrections folded into scalars.
        correction1 = 1 - beta1**self.steps
        correction2 = 1 - beta2**self.steps
        denom = np.sqrt(v) * (1 / math.sqrt(correction2)) + self.eps
        value -= (self.lr / correction1) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): w <- w * (1 - lr*wd)."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def _decay(self, value: np.ndarray, grad: np.ndarray) -> np.ndarray:
        if self.weight_decay:
            value *= 1 - self.lr * self.weight_decay
        return grad


class RMSProp(Optimizer):
    """RMSProp (Hinton, lecture 6e) as in PyTorch: v <- a*v + (1-a)*g^2; w -= lr*g/(sqrt(v)+eps)."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.alpha, self.eps = float(alpha), float(eps)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)

    def _update(self, value: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray]) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * value
        square_avg = self._slot(state, "square_avg", value)
        square_avg *= self.alpha
        square_avg += (1 - self.alpha) * grad * grad
        step = grad / (np.sqrt(square_avg) + self.eps)
        if self.momentum:
            buffer = self._slot(state, "momentum_buffer", value)
            buffer *= self.momentum
            buffer += step
            step = buffer
        value -= self.lr * step


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSProp,
}
