"""Data-parallel training over MPI: the processes of ``mpiexec -n N`` and their collectives.

``world()`` is the communicator of this run: a one-process ``Communicator`` whose
collectives are the identity (the default, and whenever MPI did not start us), or an
``MPICommunicator`` over mpi4py's ``COMM_WORLD`` under ``mpiexec`` with more than one
process. mpi4py is imported only then (``pip install 'faltung[mpi]'``).

The training step's single Allreduce packs the gradients, the float buffers (batch-norm
running statistics) and the step's statistics into one flat buffer (``FlatReducer``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

# What MPI launchers put in each process's environment: MPICH/Intel MPI (Hydra), Open MPI,
# MVAPICH. Only under one of these do we initialise MPI at all.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


class DistributedError(RuntimeError):
    """An expected failure that every rank raises together (say, ranks disagree on the
    settings): rank 0 reports it once, and every process exits cleanly."""


class Communicator:
    """One process: every collective returns its input. The base of ``MPICommunicator``."""

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_(self, buffer: np.ndarray) -> np.ndarray:
        """Sum ``buffer`` over the ranks, in place."""
        return buffer

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def bcast(self, obj: Any) -> Any:
        return obj

    def barrier(self) -> None: ...

    def abort(self, code: int) -> None:
        raise SystemExit(code)

    # -- built from the collectives above -------------------------------------------------
    def shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's part of a batch: contiguous, sizes differing by at most one, the
        larger parts first (``np.array_split``), so every rank takes a disjoint slice of
        the same permutation and no image travels over the network."""
        if self.size == 1:
            return index
        return np.array_split(index, self.size)[self.rank]

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Run a block on every rank; if it fails anywhere, fail everywhere, with one message.

        The block must not call collectives itself: a rank that fails skips the rest.
        """
        error: Exception | None = None
        try:
            yield
        except (OSError, ValueError, DistributedError, LookupError) as caught:
            if self.size == 1:
                raise
            error = caught
        if self.size == 1:
            return
        failures = self.allgather(None if error is None else " ".join(str(error).split()))
        first = next(((r, m) for r, m in enumerate(failures) if m is not None), None)
        if first is not None:
            rank, message = first
            raise DistributedError(message if rank == 0 else f"rank {rank}: {message}")

    def on_root(self, read: Any, *args: Any) -> Any:
        """``read(*args)`` on rank 0 alone, its result broadcast; its failure raised everywhere."""
        if self.size == 1:
            return read(*args)
        result: Any = None
        if self.is_root:
            try:
                result = read(*args)
            except (OSError, ValueError, DistributedError, LookupError) as error:
                result = DistributedError(" ".join(str(error).split()))
        result = self.bcast(result)
        if isinstance(result, DistributedError):
            raise result
        return result

    def check_same(self, values: dict[str, Any]) -> None:
        """Raise ``DistributedError`` on every rank unless all ranks hold equal ``values``."""
        if self.size == 1:
            return
        digests = {key: _digest(value) for key, value in values.items()}
        every = self.allgather(digests)
        differ = [key for key in values if any(d[key] != every[0][key] for d in every)]
        if not differ:
            return
        key = differ[0]
        value = values[key]
        if isinstance(value, dict):  # name the entries that differ, with every rank's value
            shown = self.allgather({k: _short(v) for k, v in value.items()})
            names = sorted({k for d in shown for k in d if d.get(k) != shown[0].get(k)})
        else:
            shown, names = self.allgather({key: _short(value)}), [key]
        details = "; ".join(
            f"{name}: " + ", ".join(f"rank {r} has {d.get(name)}" for r, d in enumerate(shown))
            for name in names
        )
        raise DistributedError(
            f"the {len(every)} processes disagree on {', '.join(differ)} ({details}); "
            "every rank must run the same command on the same data and model"
        )

    def describe(self, batch_size: int) -> str:
        """'4 processes, 16 images each per step of 64' (sizes may differ by one)."""
        sizes = sorted({len(part) for part in np.array_split(np.arange(batch_size), self.size)})
        each = "-".join(str(s) for s in sizes)
        return f"{self.size} processes, {each} images each per step of {batch_size}"


class MPICommunicator(Communicator):
    """mpi4py's ``COMM_WORLD``. An MPI error raises mpi4py's exception, and the command line
    then aborts the job; the death of a process ends the job through the launcher."""

    def __init__(self) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def allreduce_(self, buffer: np.ndarray) -> np.ndarray:
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        return buffer

    def allgather(self, obj: Any) -> list[Any]:
        return self.comm.allgather(obj)

    def bcast(self, obj: Any) -> Any:
        return self.comm.bcast(obj, root=0)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        self.comm.Abort(code)


_WORLD: Communicator | None = None


def launched_size() -> int:
    """The process count an MPI launcher announced in our environment (1 if none)."""
    for name in SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def launched_rank() -> int:
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def created_world() -> Communicator | None:
    """The communicator if ``world()`` made one, without starting MPI."""
    return _WORLD


def world() -> Communicator:
    """This run's communicator, created once: MPI only under a launcher with N > 1."""
    global _WORLD
    if _WORLD is None:
        if launched_size() > 1:
            try:
                _WORLD = MPICommunicator()
            except ImportError:
                raise DistributedError(
                    f"started by mpiexec with {launched_size()} processes, but mpi4py is not "
                    "installed (pip install 'faltung[mpi]')"
                ) from None
        else:
            _WORLD = Communicator()
    return _WORLD


class FlatReducer:
    """One Allreduce per step: gradients, float buffers and a few scalars in one buffer.

    After ``reduce`` every parameter's gradient is a view into the summed buffer (the
    optimiser only reads it), each buffer holds the mean over the ranks, and the scalars
    come back summed.
    """

    def __init__(
        self, comm: Communicator, params: Sequence[Any], buffers: Sequence[tuple[dict, str]],
        scalars: int,
    ) -> None:  # fmt: skip
        self.comm, self.params, self.buffers = comm, list(params), list(buffers)
        sizes = [p.value.size for p in self.params] + [s[k].size for s, k in self.buffers]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        dtype = self.params[0].value.dtype if self.params else np.dtype(np.float32)
        self.buffer = np.zeros(self.offsets[-1] + scalars, dtype)
        self.seconds = 0.0  # time inside Allreduce, for the benchmark

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes

    def reduce(self, scalars: Sequence[float], have_grads: bool = True) -> np.ndarray:
        buffer, offsets, n = self.buffer, self.offsets, len(self.params)
        for i, p in enumerate(self.params):
            view = buffer[offsets[i] : offsets[i + 1]]
            if have_grads and p.grad is not None:
                view[...] = p.grad.ravel()
            else:
                view[...] = 0
        for j, (store, key) in enumerate(self.buffers):
            buffer[offsets[n + j] : offsets[n + j + 1]] = store[key].ravel()
        buffer[offsets[-1] :] = scalars
        started = time.perf_counter()
        self.comm.allreduce_(buffer)
        self.seconds += time.perf_counter() - started
        for i, p in enumerate(self.params):
            p.owner.grads[p.key] = buffer[offsets[i] : offsets[i + 1]].reshape(p.value.shape)
        for j, (store, key) in enumerate(self.buffers):
            summed = buffer[offsets[n + j] : offsets[n + j + 1]].reshape(store[key].shape)
            np.divide(summed, self.comm.size, out=store[key], casting="unsafe")
        return buffer[offsets[-1] :].copy()

    def gradients_finite(self) -> bool:
        """Whether every summed gradient element is finite (a sum of them could overflow)."""
        return bool(np.isfinite(self.buffer[: self.offsets[len(self.params)]]).all())


def _digest(value: Any) -> str:
    if isinstance(value, np.ndarray):
        data = value.dtype.str.encode() + str(value.shape).encode() + value.tobytes()
    else:
        data = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.shape} {_digest(value)[:8]}"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else f"{text[:40]}... ({_digest(value)[:8]})"
