"""Learning-rate schedules as pure functions of the (fractional) epoch.

A schedule holds no state beyond its settings, so resuming from a checkpoint needs only the
epoch. The trainer takes each step's rate at the middle of the step,
``lr = schedule(epoch + (step + 1/2) / steps_per_epoch)``, so that a warm-up from 0 does not
waste the first step, nor a decay to 0 the last.
"""

from __future__ import annotations

import math


class Schedule:
    """Base: optional linear warm-up from ``warmup_start * base_lr`` over ``warmup_epochs``."""

    def __init__(self, base_lr: float, warmup_epochs: float = 0.0, warmup_start: float = 0.0):
        if not base_lr > 0:
            raise ValueError(f"base_lr must be positive, got {base_lr}")
        if not warmup_epochs >= 0:
            raise ValueError(f"warmup_epochs must be non-negative, got {warmup_epochs}")
        if not 0 <= warmup_start <= 1:  # a fraction of base_lr: a negative rate climbs the loss
            raise ValueError(f"warmup_start must be in [0, 1], got {warmup_start}")
        self.base_lr, self.warmup_epochs, self.warmup_start = base_lr, warmup_epochs, warmup_start

    def __call__(self, epoch: float) -> float:
        lr = self.decayed(epoch)
        if epoch < self.warmup_epochs:
            fraction = epoch / self.warmup_epochs
            lr *= self.warmup_start + (1 - self.warmup_start) * fraction
        return lr

    def decayed(self, epoch: float) -> float:
        raise NotImplementedError


class Constant(Schedule):
    def decayed(self, epoch: float) -> float:
        return self.base_lr


MIN_STEP_SIZE = 1e-6


class StepDecay(Schedule):
    """lr = base * gamma ** floor(epoch / step_size): the article's x0.9 every 10 epochs.
    ``step_size`` is in epochs, and may be a fraction of one (0.5: twice an epoch)."""

    def __init__(
        self,
        base_lr: float,
        step_size: float,
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        warmup_start: float = 0.0,
    ):
        super().__init__(base_lr, warmup_epochs, warmup_start)
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if step_size < MIN_STEP_SIZE:  # epoch / step_size would overflow math.floor
            raise ValueError(f"step_size must be at least {MIN_STEP_SIZE:g}, got {step_size}")
        self.step_size, self.gamma = step_size, _decay_factor(gamma)

    def decayed(self, epoch: float) -> float:
        return self.base_lr * self.gamma ** math.floor(epoch / self.step_size)


class ExponentialDecay(Schedule):
    """lr = base * gamma ** floor(epoch): decays once per epoch."""

    def __init__(
        self, base_lr: float, gamma: float, warmup_epochs: float = 0.0, warmup_start: float = 0.0
    ):
        super().__init__(base_lr, warmup_epochs, warmup_start)
        self.gamma = _decay_factor(gamma)

    def decayed(self, epoch: float) -> float:
        return self.base_lr * self.gamma ** math.floor(epoch)


class CosineDecay(Schedule):
    """lr = min + (base - min) * (1 + cos(pi * t / T)) / 2 (Loshchilov & Hutter, SGDR)."""

    def __init__(
        self,
        base_lr: float,
        total_epochs: float,
        min_lr: float = 0.0,
        warmup_epochs: float = 0.0,
        warmup_start: float = 0.0,
    ):
        super().__init__(base_lr, warmup_epochs, warmup_start)
        if not total_epochs > 0:
            raise ValueError(f"total_epochs must be positive, got {total_epochs}")
        if not 0 <= min_lr <= base_lr:
            raise ValueError(f"min_lr must be in [0, base_lr], got {min_lr}")
        self.total_epochs, self.min_lr = total_epochs, min_lr

    def decayed(self, epoch: float) -> float:
        t = min(
            max(epoch - self.warmup_epochs, 0.0)
            / max(self.total_epochs - self.warmup_epochs, 1e-12),
            1.0,
        )
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


def _decay_factor(gamma: float) -> float:
    if not 0 < gamma < math.inf:
        raise ValueError(f"gamma must be positive and finite, got {gamma}")
    return gamma


# The command line offers exactly these (``--schedule``), passing each the keyword
# arguments its constructor names.
SCHEDULES: dict[str, type[Schedule]] = {
    "step": StepDecay,
    "cosine": CosineDecay,
    "exponential": ExponentialDecay,
    "constant": Constant,
}
