"""BLAS threads under mpiexec: each process gets its share of the machine's cores."""

from __future__ import annotations

import os

# Processes that a launcher started on this machine: MPICH/Intel MPI (Hydra), Open MPI, MVAPICH.
LOCAL_SIZE_VARIABLES = (
    "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE"
)  # fmt: skip
# In OpenBLAS's order of precedence: the first one set is the count it uses.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(max(1, (cores or 1) // local))
    for variable in THREAD_VARIABLES:
        os.environ[variable] = threads
