"""A batch split over threads: each thread runs the network on its own shard of images.

NumPy runs each operation on one core, except BLAS's products. A network's pooling,
im2col, col2im, activations and bias passes therefore leave all other cores idle. So a
batch of at least ``2 * MIN_SHARD`` images is cut into equal shards, one per thread. Each
shard runs through its own replicas of the layers (``Layer.replica``): the parameters
are shared, each replica has its own cache and gradients, and a shard's gradients are
summed into the model's layers afterwards. The sum over the shards is the gradient of
the whole batch. Only a network whose layers treat each image on its own
(``Layer.per_sample``) is split: a batch norm in training mode needs the whole batch's
statistics.

NumPy releases the GIL inside its loops and BLAS calls, so the threads run at the same
time. Inside a split, OpenBLAS is held at one thread per caller. Otherwise two
threads would each start a second BLAS thread and fight over the cores.

The thread count is OpenBLAS's own, as set by ``OPENBLAS_NUM_THREADS`` or by
``mpiexec`` (one per process on a machine shared by ranks), unless
``FALTUNG_NUM_THREADS`` or :func:`set_num_threads` says otherwise. Where NumPy's BLAS
is not OpenBLAS, its threads cannot be held, and nothing is split unless asked.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

import numpy as np

from ._threads import one_blas_thread, openblas_threads

T = TypeVar("T")

# Fewer images per thread than this lose more to the narrower products and the
# hand-over between threads than the second core gains (LeNet training, batch 32 split
# in two: 0.89-1.22x; batch 16: 0.74-1.0x; batch 64: 0.84-1.29x; bench/NOTES.md).
MIN_SHARD = 32

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None


def get_num_threads() -> int:
    """How many threads a large batch is split over (1: never split)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(threads: int) -> None:
    """Split large batches over ``threads`` threads from now on (1 turns splitting off)."""
    global _threads, _pool
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    _threads = int(threads)
    if _pool is not None:
        _pool.shutdown()
        _pool = None


def _default_threads() -> int:
    asked = os.environ.get("FALTUNG_NUM_THREADS", "")
    if asked.isdigit() and int(asked) >= 1:
        return int(asked)
    blas = openblas_threads()
    return 1 if blas is None else max(1, blas.get())


def shard_count(batch: int) -> int:
    """Shards for a batch of ``batch`` images: one per thread, each of ``MIN_SHARD`` or more."""
    return max(1, min(get_num_threads(), batch // MIN_SHARD))


def shards(x: np.ndarray, count: int) -> list[np.ndarray]:
    """``x`` cut along its first axis into ``count`` nearly equal, consecutive views."""
    bounds = np.linspace(0, len(x), count + 1).round().astype(int)
    return [x[start:stop] for start, stop in itertools.pairwise(bounds)]


def run(tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Each task's result, the first task run on this thread, the others on the pool,
    with OpenBLAS held at one thread. Waits for every task before returning or raising."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(1, get_num_threads() - 1), "faltung")
    with one_blas_thread():
        futures: list[Future[T]] = [_pool.submit(task) for task in tasks[1:]]
        try:
            first = tasks[0]()
        finally:
            wait(futures)
    return [first, *(future.result() for future in futures)]
