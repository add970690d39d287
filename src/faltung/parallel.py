"""A batch split over threads: each thread runs the network on its own shard of images.

NumPy runs each operation on one core, except BLAS's products. A network's pooling,
im2col, col2im, activations and bias passes therefore leave all other cores idle. So a
batch of at least ``2 * MIN_SHARD`` images is cut into nearly equal shards, one per
thread. Each shard runs through its own replicas of the layers (``Layer.replica``): the
parameters are shared, each replica has its own cache and gradients, and the shards'
gradients are summed into the model's layers afterwards. The sum over the shards is the
gradient of the whole batch. A batch norm in training mode takes its statistics over
every shard (``ShardGroup``), so the split computes what one pass over the batch does,
up to rounding; only dropout draws other masks, from one stream per shard. A network
with a layer that cannot be split (``Layer.shardable``) runs its batch whole.

NumPy releases the GIL inside its loops and BLAS calls, so the threads run at the same
time. Inside a split, OpenBLAS is held at one thread per caller. Otherwise two
threads would each start a second BLAS thread and fight over the cores.

The thread count is OpenBLAS's own when first needed, as set by ``OPENBLAS_NUM_THREADS``
or by ``mpiexec`` (one per process on a machine shared by ranks), unless
``FALTUNG_NUM_THREADS`` or :func:`set_num_threads` says otherwise; a later change of
OpenBLAS's count is not followed. Where NumPy's BLAS is not OpenBLAS, its threads cannot
be held, and nothing is split unless asked.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import NamedTuple, TypeVar

import numpy as np

from ._threads import one_blas_thread, openblas_threads, usable_cores
from .layers import Layer
from .layers.fusion import forward_in_order

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


def _forget_threads_after_fork() -> None:
    # A forked child has none of the pool's threads, and may hold a copy of a taken lock.
    global _pool, _workers, _one_split, _in_split
    _pool, _workers = None, 0
    _one_split, _in_split = threading.Lock(), threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


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
    _refuse_inside_a_shard("set_num_threads")
    with _one_split:
        _threads = int(threads)
        if _pool is not None:
            _pool.shutdown()
            _pool = None


def _default_threads() -> int:
    asked = os.environ.get("FALTUNG_NUM_THREADS")
    if asked is not None:
        threads = int(asked) if asked.strip().isdigit() else 0
        if threads < 1:
            warnings.warn(
                f"FALTUNG_NUM_THREADS={asked!r} is not a positive integer; ignored", stacklevel=3
            )
        else:
            cores = usable_cores()
            if threads > cores:
                warnings.warn(
                    f"FALTUNG_NUM_THREADS={asked} is more than the {cores} cores this "
                    "process may use: its shards will take turns on them",
                    stacklevel=3,
                )
            return threads
    blas = openblas_threads()
    return 1 if blas is None else max(1, blas.get())


def _refuse_inside_a_shard(what: str) -> None:
    if getattr(_in_split, "active", False):
        raise RuntimeError(f"{what} cannot be called from inside a shard of a split batch")


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
    with OpenBLAS held at one thread and this thread's NumPy error handling (a context
    variable). Waits for every task before returning or raising; a task that fails
    releases the others of its ``group`` from waiting for it, and its error is raised."""
    global _pool, _workers
    _refuse_inside_a_shard("a split")
    threads = get_num_threads()

    def guarded(context: contextvars.Context, task: Callable[[], T]) -> T:
        _in_split.active = True
        try:
            return context.run(task)
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
            _workers = max(1, threads - 1, len(tasks) - 1)
            _pool = ThreadPoolExecutor(_workers, "faltung")
        futures: list[Future[T]] = []
        try:
            for task in tasks[1:]:
                futures.append(_pool.submit(guarded, contextvars.copy_context(), task))
            first = guarded(contextvars.copy_context(), tasks[0])
            wait(futures)
        except BaseException as error:
            if group is not None:
                group.abort()  # shards already submitted may be waiting for this one
            wait(futures)
            raise _root_error(error, futures) from None
    for future in futures:
        if future.exception() is not None:
            raise _root_error(future.exception(), futures) from None
    return [first, *(future.result() for future in futures)]


def _root_error(error: BaseException, futures: list[Future]) -> BaseException:
    """The error that failed a split: not a shard's BrokenBarrierError from waiting for it."""
    errors = [error, *(f.exception() for f in futures if f.exception() is not None)]
    return next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), error)


# -- a network's passes over a split batch (Sequential.forward / backward) ----------------
class Split(NamedTuple):
    """A training pass split over threads: each shard's replicas of the layers, in the
    order they ran, and the group their batch norms sum statistics over."""

    replicas: list[list[Layer]]
    group: ShardGroup


def forward_split(
    layers: list[Layer], x: np.ndarray, count: int, chunk: int
) -> tuple[np.ndarray, Split]:
    """``x`` through ``layers`` in ``count`` shards, each shard through replicas of the
    layers in pieces of at most ``chunk`` images; the output, and the shards for
    :func:`backward_split`."""
    group = ShardGroup(count)
    replicas = []
    for index in range(count):
        twins = [layer.replica() for layer in layers]
        for twin in twins:
            twin.join_shards(partial(group.allreduce, index), index == 0)
        replicas.append(twins)

    def run_shard(twins: list[Layer], part: np.ndarray) -> np.ndarray:
        starts = range(0, len(part), chunk)
        outs = [forward_in_order(twins, part[i : i + chunk]) for i in starts]
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    parts = shards(x, count)
    outs = run([partial(run_shard, *shard) for shard in zip(replicas, parts)], group)
    return np.concatenate(outs), Split(replicas, group)


def backward_split(dy: np.ndarray, layers: list[Layer], split: Split) -> np.ndarray | None:
    """Each shard's part of ``dy`` back through its replicas, then every gradient of
    ``layers`` the sum of its replicas'; the input gradient, or None."""

    def run_shard(twins: list[Layer], part: np.ndarray) -> np.ndarray | None:
        for twin in reversed(twins):
            part = twin.backward(part)
        return part

    parts = shards(dy, len(split.replicas))
    tasks = [partial(run_shard, *shard) for shard in zip(split.replicas, parts)]
    dxs = run(tasks, split.group)
    for i, layer in enumerate(layers):
        _sum_shard_grads(layer, [twins[i] for twins in split.replicas])
    return None if dxs[0] is None else np.concatenate(dxs)


def _with_inner(layer: Layer) -> list[Layer]:
    """``layer`` and every layer inside it, in one fixed order."""
    return [layer, *(inner for _, inner in layer.named_layers())]


def _sum_shard_grads(layer: Layer, twins: list[Layer]) -> None:
    """Each gradient of ``layer`` (and of the layers inside it): the sum of its twins'."""
    for own, first, *others in zip(_with_inner(layer), *map(_with_inner, twins)):
        for key, total in first.grads.items():
            for twin in others:
                total += twin.grads[key]  # the first twin's own fresh array
            own.grads[key] = total
