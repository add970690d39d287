"""Dropout layer: holds the probability and its own random generator."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..init import as_generator
from .base import Layer


class Dropout(Layer):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) while training.

    The layer owns its random generator (``rng``), so a seeded model drops the same units
    on every run, and a checkpoint can save and restore the generator's state.
    """

    def __init__(self, p: float = 0.5, rng: int | np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise self._fail(f"p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = as_generator(rng)

    def reset_parameters(self, rng: np.random.Generator) -> None:
        # Derive our own stream from the model's seed so that layer order fixes the masks.
        self.rng = np.random.default_rng(rng.integers(2**63))

    def replica(self) -> Dropout:
        # Each shard draws its masks from a stream of its own, seeded from ours in the
        # order the shards are made: the same seed and thread count drop the same units.
        # Eval mode draws nothing, and must not move our stream.
        twin = super().replica()
        if self.training:
            twin.rng = np.random.default_rng(self.rng.integers(2**63))
        return twin

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:  # the identity: backward passes dy through
            return self._run(_identity, x)
        return self._run(self.kernels.dropout_forward, x, self.p, self.rng)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.kernels.dropout_backward(dy, self._cache)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}


def _identity(x: np.ndarray) -> tuple[np.ndarray, None]:
    return x, None
