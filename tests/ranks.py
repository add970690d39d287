"""Ranks simulated by threads in one process (collectives for tests without MPI), and the
``mpiexec`` that the real MPI tests launch."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faltung.distributed import Communicator


class ThreadRanks(Communicator):
    """Rank ``rank`` of ``size`` threads that meet in ``allgather``; sums in rank order."""

    def __init__(self, rank: int, size: int, barrier: threading.Barrier, slots: list) -> None:
        self.rank, self.size, self._barrier, self._slots = rank, size, barrier, slots

    def allgather(self, obj: Any) -> list[Any]:
        self._slots[self.rank] = obj
        self._barrier.wait()
        gathered = list(self._slots)
        self._barrier.wait()
        return gathered

    def allreduce_(self, buffer: np.ndarray) -> np.ndarray:
        parts = self.allgather(buffer.copy())
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        buffer[...] = total
        return buffer

    def bcast(self, obj: Any) -> Any:
        return self.allgather(obj)[0]


def run_ranks(size: int, work: Callable[[ThreadRanks], Any]) -> list[Any]:
    """``work(comm)`` on ``size`` simulated ranks; their results in rank order."""
    barrier, slots = threading.Barrier(size, timeout=30), [None] * size
    results: list[Any] = [None] * size
    errors: list[BaseException] = []

    def target(rank: int) -> None:
        try:
            results[rank] = work(ThreadRanks(rank, size, barrier, slots))
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    return results


def mpiexec() -> str:
    """The mpiexec beside this Python (where ``pip install mpich`` puts it), else on PATH;
    skips the test without mpi4py or mpiexec."""
    pytest.importorskip("mpi4py")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec beside Python or on PATH")
    return found
