"""BLAS threads: each process's share of the cores under mpiexec, and OpenBLAS's thread
count changed at run time for batches that faltung splits over threads of its own."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from typing import NamedTuple

# Processes that a launcher started on this machine: MPICH/Intel MPI (Hydra), Open MPI, MVAPICH.
LOCAL_SIZE_VARIABLES = (
    "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE"
)  # fmt: skip
# In OpenBLAS's order of precedence: the first one set is the count it uses.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def share_cores_under_mpi() -> None:
    """Set the BLAS thread count to cores / local processes, unless the user set one.

    N processes that each start a thread per core fight over the cores. This must run
    before NumPy loads its BLAS, so ``faltung`` calls it before importing NumPy; it does
    nothing outside an MPI launch or when NumPy was imported first.
    """
    local = next(
        (int(os.environ[v]) for v in LOCAL_SIZE_VARIABLES if os.environ.get(v, "").isdigit()), 1
    )
    if local <= 1 or any(v in os.environ for v in THREAD_VARIABLES):
        return
    threads = str(max(1, usable_cores() // local))
    for variable in THREAD_VARIABLES:
        os.environ[variable] = threads


# -- OpenBLAS's thread count, changed while the process runs ------------------------------
# Where faltung runs a batch in threads of its own (``faltung.parallel``), each thread must
# call a one-thread BLAS: two threads that each start a second BLAS thread fight over the
# cores. OpenBLAS exports its setter and getter under a prefix that depends on the build:
# NumPy's wheels bundle scipy-openblas (``scipy_openblas_*64_``), older wheels
# ``openblas_*64_``, distributions plain ``openblas_*``.
_OPENBLAS_PREFIXES = ("scipy_openblas_", "openblas_")
_OPENBLAS_SUFFIXES = ("64_", "")


class BlasThreads(NamedTuple):
    get: Callable[[], int]
    set: Callable[[int], None]


@functools.cache
def openblas_threads() -> BlasThreads | None:
    """Getter and setter of the thread count of the OpenBLAS that NumPy uses, or None
    where NumPy's BLAS is another or the library cannot be found (only Linux's
    /proc/self/maps is searched). An OpenBLAS built with OpenMP sets the count of the
    calling thread only; NumPy's wheels bundle the pthreads build."""
    import numpy

    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except (TypeError, KeyError):  # a NumPy too old to say
        blas = ""
    if "openblas" not in str(blas).lower():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    # NumPy's own copy first (numpy.libs/ beside a wheel's numpy/): SciPy may load another.
    numpy_dir = os.path.dirname(numpy.__file__)
    own = (numpy_dir + os.sep, numpy_dir + ".libs" + os.sep)
    for path in sorted(paths, key=lambda path: (not path.startswith(own), path)):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _OPENBLAS_PREFIXES:
            for suffix in _OPENBLAS_SUFFIXES:
                getter = getattr(library, f"{prefix}get_num_threads{suffix}", None)
                setter = getattr(library, f"{prefix}set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype, getter.argtypes = ctypes.c_int, []
                    setter.restype, setter.argtypes = None, [ctypes.c_int]
                    return BlasThreads(getter, setter)
    return None


def blas_threads() -> int:
    """The threads a BLAS product runs on now: OpenBLAS's count (1 inside a shard of a
    split batch), or the usable cores where NumPy's BLAS is another."""
    blas = openblas_threads()
    return max(1, blas.get()) if blas is not None else usable_cores()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """OpenBLAS at one thread inside the block, its previous count restored after."""
    blas = openblas_threads()
    before = blas.get() if blas is not None else 1
    if before > 1:
        blas.set(1)
    try:
        yield
    finally:
        if before > 1:
            blas.set(before)
