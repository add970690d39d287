"""Weight initialisers driven by an explicit ``numpy.random.Generator``.

He (Kaiming) initialisation suits ReLU networks (He et al., 2015: var = 2 / fan_in);
Glorot (Xavier) suits sigmoid and tanh (Glorot & Bengio, 2010: var = 2 / (fan_in + fan_out)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[tuple[int, ...], np.random.Generator, np.dtype], np.ndarray]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a dense (out, in) or convolution (out, in/groups, kh, kw) weight."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def he_normal(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    std = math.sqrt(2.0 / fans(shape)[0])
    return (rng.standard_normal(shape) * std).astype(dtype)


def he_uniform(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    bound = math.sqrt(6.0 / fans(shape)[0])
    return rng.uniform(-bound, bound, shape).astype(dtype)


def glorot_normal(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std).astype(dtype)


def glorot_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(dtype)


def lecun_uniform(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what PyTorch's Conv2d and Linear use by default."""
    bound = 1.0 / math.sqrt(fans(shape)[0])
    return rng.uniform(-bound, bound, shape).astype(dtype)


def zeros(shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


INITIALIZERS: dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "lecun_uniform": lecun_uniform,
    "zeros": zeros,
}


def get_initializer(name: str) -> Initializer:
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(
            f"unknown initializer {name!r}; choose one of {', '.join(sorted(INITIALIZERS))}"
        ) from None


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A Generator from a seed (reproducible), a Generator (shared), or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
