"""A batch split over threads: each thread runs the network on its own shard of images.

NumPy runs each operation on one core, except BLAS's products. A network's pooling,
im2col, col2im, activations and bias passes therefore leave all other cores idle. So a
batch of at least ``2 * MIN_SHARD`` images is cut into nearly equal shards, one per
thread. Each shard runs through its own replicas of the layers (``Layer.replica``): the
parameters are shared, each replica has its own cache and gradients, and a shard's
gradients are summed into the model's layers afterwards. The sum over the shards is the
gradient of the whole batch. A batch norm in training mode takes its statistics over
every shard (``ShardGroup``), so the split computes what one pass over the batch does,
up to rounding; only dropout draws other masks, from one stream per shard. A network
with a layer that cannot be split (``Layer.shardable``) runs its batch whole.

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
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

import numpy as np

from ._threads import one_blas_thread, openblas_threads

T = TypeVar("T")

# Below this many images per thread the narrower products and the hand-over between the
# threads cost more than the second core gains (measured: bench/NOTES.md, round six).
MIN_SHARD = 32

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_workers = 0
# One split at a time: its shards must all start at once (they wait for each other in
# batch norm), and OpenBLAS's thread count is the whole process's.
_one_split = threading.Lock()
_in_split = threading.local()  # set on a thread while it runs a shard


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
    with _one_split:
        _threads = int(threads)
        if _pool is not None:
            _pool.shutdown()
            _pool = None


def _default_threads() -> int:
    asked = os.environ.get("FALTUNG_NUM_THREADS")
    if asked is not None:
        if asked.strip().isdigit() and int(asked) >= 1:
            return int(asked)
        warnings.warn(
            f"FALTUNG_NUM_THREADS={asked!r} is not a positive integer; ignored", stacklevel=3
        )
    blas = openblas_threads()
    return 1 if blas is None else max(1, blas.get())


def shard_count(batch: int) -> int:
    """Shards for a batch of ``batch`` images: one per thread, each of ``MIN_SHARD`` or more;
    one inside a shard (a network run by a layer of another is not split again)."""
    if getattr(_in_split, "active", False):
        return 1
    return max(1, min(get_num_threads(), batch // MIN_SHARD))


def shards(x: np.ndarray, count: int) -> list[np.ndarray]:
    """``x`` cut along its first axis into ``count`` nearly equal, consecutive views."""
    bounds = [len(x) * i // count for i in range(count + 1)]
    return [x[start:stop] for start, stop in itertools.pairwise(bounds)]


class ShardGroup:
    """The shards of one batch, for layers whose statistics span the whole batch.
    ``allreduce(index, buffer)`` is collective: every shard's thread calls it with a
    buffer of one shape, and each returns when every buffer holds the sum over the shards
    (in shard order, so every shard gets the same bits)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._barrier = threading.Barrier(size)
        self._buffers: list[np.ndarray | None] = [None] * size

    def allreduce(self, index: int, buffer: np.ndarray) -> np.ndarray:
        self._buffers[index] = buffer
        self._barrier.wait()
        total = self._buffers[0].copy()
        for other in self._buffers[1:]:
            total += other
        self._barrier.wait()  # every shard has read every buffer before any is changed
        buffer[...] = total
        return buffer

    def abort(self) -> None:
        """Release shards waiting for one that failed: they raise BrokenBarrierError."""
        self._barrier.abort()


def run(tasks: Sequence[Callable[[], T]], group: ShardGroup | None = None) -> list[T]:
    """Each task's result, the first task run on this thread, the others on the pool,
    with OpenBLAS held at one thread and this thread's NumPy error handling. Waits for
    every task before returning or raising; a task that fails releases the others of its
    ``group`` from waiting for it, and its error is raised."""
    global _pool, _workers
    errors = np.geterr()  # per thread: the pool's threads would start from the defaults

    def guarded(task: Callable[[], T]) -> T:
        _in_split.active = True
        try:
            with np.errstate(**errors):
                return task()
        except BaseException:
            if group is not None:
                group.abort()
            raise
        finally:
            _in_split.active = False

    with _one_split, one_blas_thread():
        if _pool is None or _workers < len(tasks) - 1:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _workers = max(1, get_num_threads() - 1, len(tasks) - 1)
            _pool = ThreadPoolExecutor(_workers, "faltung")
        futures: list[Future[T]] = []
        try:
            futures += [_pool.submit(guarded, task) for task in tasks[1:]]
            first = guarded(tasks[0])
        except BaseException as error:
            if group is not None:
                group.abort()  # shards already submitted may be waiting for this one
            wait(futures)
            raise _root_error(error, futures) from None
        wait(futures)
    for future in futures:
        if future.exception() is not None:
            raise _root_error(future.exception(), futures) from None
    return [first, *(future.result() for future in futures)]


def _root_error(error: BaseException, futures: list[Future]) -> BaseException:
    """The error that failed a split: not a shard's BrokenBarrierError from waiting for it."""
    errors = [error, *(f.exception() for f in futures if f.exception() is not None)]
    return next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), error)
