"""faltung.distributed: shards, shared failures, agreement checks and the flat Allreduce,
on ranks simulated by threads (tests/ranks.py); the real MPI runs are in tests/train and
tests/cli."""

from __future__ import annotations

import os

import numpy as np
import pytest

from faltung import distributed
from faltung._threads import share_cores_under_mpi
from faltung.distributed import Communicator, DistributedError, FlatReducer
from faltung.layers import BatchNorm1D, Dense

from .ranks import run_ranks


def test_one_process_is_the_identity():
    comm = Communicator()
    index = np.arange(7)
    assert comm.shard(index) is index
    buffer = np.ones(3)
    assert comm.allreduce_(buffer) is buffer and buffer.tolist() == [1, 1, 1]
    assert comm.allgather("x") == ["x"] and comm.bcast(5) == 5
    with pytest.raises(ValueError, match="own message"), comm.together():
        raise ValueError("its own message")  # one process: the original error, unchanged
    comm.check_same({"batch_size": 3})


def test_world_outside_mpiexec_is_one_process(monkeypatch):
    monkeypatch.setattr(distributed, "_WORLD", None)
    for name in distributed.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert type(distributed.world()) is Communicator


def test_launched_by_mpiexec_without_mpi4py_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpi4py(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(distributed, "_WORLD", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    with pytest.raises(DistributedError, match=r"2 processes.*faltung\[mpi\]"):
        distributed.world()


def test_shards_cover_the_batch_in_order_larger_ones_first():
    index = np.arange(10) * 3
    shards = run_ranks(3, lambda comm: comm.shard(index).tolist())
    assert shards == [[0, 3, 6, 9], [12, 15, 18], [21, 24, 27]]
    assert Communicator().describe(64) == "1 processes, 64 images each per step of 64"
    described = run_ranks(3, lambda comm: comm.describe(64))
    assert described[0] == "3 processes, 21-22 images each per step of 64"
    assert run_ranks(4, lambda comm: comm.describe(64))[0] == (
        "4 processes, 16 images each per step of 64"
    )


def test_a_failure_on_one_rank_is_one_error_on_every_rank():
    def work(comm):
        try:
            with comm.together():
                if comm.rank == 1:
                    raise OSError("no dataset at /data")
        except DistributedError as error:
            return str(error)

    assert run_ranks(3, work) == ["rank 1: no dataset at /data"] * 3


def test_rank_0_reads_and_its_failure_reaches_everyone():
    def read(path):
        raise ValueError(f"{path}: not a checkpoint")

    def work(comm):
        assert comm.on_root(lambda: comm.rank) == 0  # every rank gets rank 0's answer
        with pytest.raises(DistributedError, match="c.npz: not a checkpoint"):
            comm.on_root(read, "c.npz")

    run_ranks(2, work)


def test_disagreeing_settings_are_named():
    def work(comm):
        batch = 64 if comm.rank == 0 else 32
        try:
            comm.check_same({"settings": {"batch_size": batch, "lr": 0.1}, "data": "abc"})
        except DistributedError as error:
            return str(error)

    messages = run_ranks(2, work)
    assert messages[0] == messages[1]
    assert "disagree on settings (batch_size: rank 0 has 64, rank 1 has 32)" in messages[0]


def test_flat_reducer_sums_gradients_averages_buffers_in_one_call():
    calls = []

    def work(comm):
        dense, norm = Dense(3, 2), BatchNorm1D(2)
        dense.reset_parameters(np.random.default_rng(0))
        dense.grads = {k: np.full_like(v, comm.rank + 1) for k, v in dense.params.items()}
        norm.buffers["running_mean"][:] = [comm.rank, 2 * comm.rank]
        from faltung.layers import Parameter

        params = [Parameter(f"fc.{k}", dense, k) for k in dense.params]
        reducer = FlatReducer(comm, params, [(norm.buffers, "running_mean")], scalars=2)
        real = comm.allreduce_
        comm.allreduce_ = lambda buffer: calls.append(1) or real(buffer)
        scalars = reducer.reduce([comm.rank, 1.0])
        assert reducer.nbytes == (6 + 2 + 2 + 2) * 4
        return dense.grads["weight"], norm.buffers["running_mean"], scalars

    results = run_ranks(2, work)
    assert len(calls) == 2  # one Allreduce per rank
    for grad, mean, scalars in results:
        assert grad.shape == (2, 3) and np.all(grad == 3)
        np.testing.assert_array_equal(mean, [0.5, 1.0])
        assert mean.dtype == np.float32
        np.testing.assert_array_equal(scalars, [1, 2])


def test_blas_threads_are_shared_among_local_ranks(monkeypatch):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    share_cores_under_mpi()
    assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
    share_cores_under_mpi()
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_flat_reducer_checks_each_summed_gradient_element_not_their_sum():
    """Huge finite float32 gradients whose sum would overflow are finite; one infinity is not."""
    from faltung.layers import Parameter

    def work(comm):
        dense = Dense(3, 2)
        params = [Parameter(f"fc.{k}", dense, k) for k in dense.params]
        reducer = FlatReducer(comm, params, [], scalars=1)
        dense.grads = {k: np.full_like(v, 1e38) for k, v in dense.params.items()}
        reducer.reduce([0.0])
        huge = reducer.gradients_finite()
        dense.grads = {k: np.full_like(v, 1.0) for k, v in dense.params.items()}
        dense.grads["bias"][1] = np.inf if comm.rank == 1 else 1.0
        reducer.reduce([0.0])
        return huge, reducer.gradients_finite()

    assert run_ranks(2, work) == [(True, False)] * 2
