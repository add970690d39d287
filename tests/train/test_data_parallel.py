"""Data-parallel training: N ranks with global batch B end where one process with batch B
does, in threads (fast, any N) and with mpiexec -n 2 (the real thing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..ranks import mpiexec, run_ranks
from .data_parallel import model, relative_error, trainer

ROOT = Path(__file__).resolve().parents[2]


def assert_same_weights(state, reference, tolerance=1e-5):
    """Each tensor to ``tolerance`` relative (in norm). A convolution's bias before batch
    norm has a zero gradient in theory and rounding noise in practice: it is compared with
    an absolute tolerance instead."""
    assert state.keys() >= reference.keys()
    for key in reference:
        a, b = np.asarray(state[key], np.float64), np.asarray(reference[key], np.float64)
        if np.linalg.norm(b) < 1e-4:
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=key)
            continue
        error = relative_error(a, b)
        assert error <= tolerance, f"{key}: relative error {error:.2e}"


@pytest.fixture(scope="module")
def one_process():
    run = trainer()
    history = run.fit()
    return run.model.state_dict(), history.last


@pytest.mark.parametrize("size", [2, 3])
def test_ranks_in_threads_end_on_the_weights_of_one_process(size, one_process):
    reference, last = one_process

    def work(comm):
        run = trainer(comm)
        last = run.fit().last
        return run.model.state_dict(), last

    results = run_ranks(size, work)
    for state, row in results:
        assert_same_weights(state, reference)
        assert row["loss"] == pytest.approx(last["loss"], rel=1e-5)
        assert row["test_acc"] == last["test_acc"]  # the sharded evaluation, gathered
    for key in reference:  # the ranks hold identical weights, not merely close ones
        assert all(np.array_equal(s[key], results[0][0][key]) for s, _ in results)


def test_sync_batch_norm_ranks_match_batch_norm_in_one_process():
    single = trainer(norm="batch")
    single.fit()
    reference = single.model.state_dict()

    def work(comm):
        run = trainer(comm, norm="sync")
        run.fit()
        return run.model.state_dict()

    for state in run_ranks(2, work):
        assert_same_weights(state, reference)


def test_per_rank_batch_norm_keeps_the_ranks_in_step():
    def work(comm):
        run = trainer(comm, norm="batch")
        run.fit()
        return run.model.state_dict()

    states = run_ranks(2, work)
    for key in states[0]:  # the running statistics are averaged in the step's Allreduce
        np.testing.assert_array_equal(states[0][key], states[1][key], err_msg=key)


def test_a_two_rank_checkpoint_resumes_on_one_and_three_ranks(tmp_path):
    straight = trainer(epochs=2)
    straight.fit()
    reference = straight.model.state_dict()
    checkpoint = tmp_path / "ckpt.npz"

    def first_epoch(comm):
        run = trainer(comm, epochs=1, checkpoint=checkpoint)
        run.fit()

    run_ranks(2, first_epoch)

    def resume(comm):
        run = trainer(comm, epochs=2, checkpoint=checkpoint)
        run.load_checkpoint(checkpoint)
        assert run.epoch == 1
        run.fit()
        return run.model.state_dict()

    for state in run_ranks(3, resume):
        assert_same_weights(state, reference)
    resumed = trainer(epochs=2)
    resumed.load_checkpoint(checkpoint)
    resumed.fit()
    assert_same_weights(resumed.model.state_dict(), reference)


def test_a_batch_smaller_than_the_rank_count_is_refused():
    def work(comm):
        with pytest.raises(ValueError, match="batch size 2 leaves some of the 3 processes"):
            trainer(comm, batch_size=2)

    run_ranks(3, work)


def test_sync_batch_norm_refuses_a_last_batch_that_leaves_a_rank_empty():
    # 245 images in batches of 61: a last batch of 1 image, nothing for rank 1 to normalise
    def work(comm):
        with pytest.raises(ValueError, match=r"last batch of each epoch \(1 of 245"):
            trainer(comm, norm="sync", batch_size=61)

    run_ranks(2, work)


def run_mpi(n: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [mpiexec(), "-n", str(n), sys.executable, *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("norm", ["none", "sync"])
def test_mpiexec_two_ranks_one_epoch_equal_one_process(tmp_path, norm):
    """The issue's equivalence: 2 ranks, global batch 64, one epoch == 1 process, batch 64."""
    done = run_mpi(2, "-m", "tests.train.data_parallel", str(tmp_path), norm)
    assert done.returncode == 0, done.stderr
    single = trainer(norm="batch" if norm == "sync" else "none")
    last = single.fit().last
    reference = single.model.state_dict()
    ranks = [dict(np.load(tmp_path / f"rank-{r}.npz")) for r in range(2)]
    for state in ranks:
        assert_same_weights(state, reference)
        assert float(state["history_loss"]) == pytest.approx(last["loss"], rel=1e-5)
        assert float(state["test_acc"]) == last["test_acc"]
    for key in reference:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    assert model().config() is not None


def test_dropout_masks_differ_per_rank_and_a_resume_on_as_many_ranks_is_exact(tmp_path):
    from faltung import Sequential
    from faltung.layers import Dense, Dropout, Flatten
    from faltung.losses import SoftmaxCrossEntropy
    from faltung.optim import Adam
    from faltung.train import Trainer

    from .data_parallel import data

    def run(comm, epochs, checkpoint=None, resume=False):
        net = Sequential([("flat", Flatten()), ("drop", Dropout(0.5)), ("fc", Dense(784, 10))], 1)
        run = Trainer(net, SoftmaxCrossEntropy(), Adam(net.parameters(), lr=0.01), data()[0],
                      epochs=epochs, batch_size=32, seed=2, comm=comm, checkpoint_path=checkpoint)  # fmt: skip
        if resume:
            run.load_checkpoint(checkpoint)
        states = [net["drop"].rng.bit_generator.state["state"]["state"]]
        run.fit()
        return states + [net["drop"].rng.bit_generator.state["state"]["state"]], net.state_dict()

    straight = run_ranks(2, lambda comm: run(comm, 2))
    assert straight[0][0][0] != straight[1][0][0]  # each rank draws masks of its own
    checkpoint = tmp_path / "ckpt.npz"
    run_ranks(2, lambda comm: run(comm, 1, checkpoint))
    resumed = run_ranks(2, lambda comm: run(comm, 2, checkpoint, resume=True))
    for (streams, state), (ref_streams, ref_state) in zip(resumed, straight):
        assert streams[1] == ref_streams[1]  # every rank continued its own stream
        for key in ref_state:
            np.testing.assert_array_equal(state[key], ref_state[key], err_msg=key)
