"""faltung train under mpiexec: the banner, rank 0 writing, a rank killed with SIGKILL,
resuming on another process count, and ranks that disagree. Skips without mpi4py/mpiexec."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faltung.io import read_archive, read_model_file
from faltung.train.trainer import CHECKPOINT_FORMAT

from ..ranks import mpiexec

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["train", "--preset", "article", "--epochs", "3", "--batch-size", "10",
        "--train-size", "200", "--test-size", "50", "--no-plots"]  # fmt: skip


def command(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.cli.run_synthetic", str(tmp_path / "data"), *ARGS,
            "--out", str(out), *extra]  # fmt: skip


def start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)  # fmt: skip


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    # A hang in a collective would end here, as a test failure, not as a stuck suite.
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def weights(out: Path) -> dict[str, np.ndarray]:
    return read_model_file(out / "model.npz")[1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run on two ranks."""
    tmp_path = tmp_path_factory.mktemp("straight")
    out = tmp_path / "out"
    code, stdout, err = finish(start([mpiexec(), "-n", "2", *command(tmp_path, out)]))
    assert code == 0, err
    return out, stdout


def test_two_ranks_train_data_parallel_and_rank_0_alone_reports_and_writes(straight, tmp_path):
    out, stdout = straight
    assert "data-parallel: 2 processes, 5 images each per step of 10" in stdout
    assert stdout.count("final loss") == 1 and stdout.count("epoch   1/3") == 1
    assert {"model.npz", "checkpoint.npz", "history.json", "metrics.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    header, _ = read_archive(out / "checkpoint.npz", CHECKPOINT_FORMAT)
    assert header["ranks"] == 2 and len(header["rank_layer_rng_states"]) == 2
    # The same run in one process ends on the same weights (the article's net has no dropout).
    single = tmp_path / "single"
    code, _, err = finish(start(command(tmp_path, single)))
    assert code == 0, err
    reference = weights(single)
    # Equal up to float32 rounding: the two runs sum each step's gradients in different
    # orders (two halves over MPI, one batch here), and after three epochs the weights
    # differ by a few 1e-6 (Winograd's conv2 rounds at about 5e-6 of its results' scale).
    # Absolute, not relative to each tensor: a bias near zero magnifies a relative measure.
    for key, value in weights(out).items():
        np.testing.assert_allclose(value, reference[key], rtol=1e-4, atol=3e-5, err_msg=key)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["test_accuracy"]
        == json.loads((single / "metrics.json").read_text())["test_accuracy"]
    )


def rank_pid(out: Path, rank: int) -> int | None:
    """The process of ``rank`` among our own children that write to ``out``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(out).encode() in cmdline and f"PMI_RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_rank_killed_ends_the_job_keeps_the_checkpoint_and_resume_finishes(straight, tmp_path):
    out = tmp_path / "out"
    process = start([mpiexec(), "-n", "2", *command(tmp_path, out)])
    deadline = time.time() + 120
    while time.time() < deadline:
        history = out / "history.json"
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= 1:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    pid = rank_pid(out, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    code, _, err = finish(process)  # the whole job ends instead of hanging in an Allreduce
    assert code != 0
    header, _ = read_archive(out / "checkpoint.npz", CHECKPOINT_FORMAT)
    assert header["epoch"] >= 1
    # Resume in one process: the two-rank checkpoint continues with any process count.
    code, stdout, err = finish(start(command(tmp_path, out, "--resume")))
    assert code == 0, err
    assert "resuming at epoch" in stdout and "data-parallel" not in stdout
    reference = weights(straight[0])
    for key, value in weights(out).items():  # as in the first test: equal up to rounding
        np.testing.assert_allclose(value, reference[key], rtol=1e-4, atol=3e-5, err_msg=key)


@pytest.mark.parametrize(
    ("rank_1", "env", "expected"),
    [
        (["--batch-size", "20"], [], "settings (batch_size: rank 0 has 10, rank 1 has 20)"),
        ([], ["-env", "SYNTHETIC_SEED", "1"], "disagree on data"),
        (["--batch-size", "0"], [], "rank 1: argument --batch-size: must be a positive"),
    ],
)
def test_ranks_that_disagree_get_one_error_before_training(tmp_path, rank_1, env, expected):
    out = tmp_path / "out"
    args = [mpiexec(), "-n", "1", *command(tmp_path, out), ":",
            "-n", "1", *env, *command(tmp_path, out, *rank_1)]  # fmt: skip
    code, stdout, err = finish(start(args))
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("faltung: error:")]
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err and "epoch" not in stdout
    assert not out.exists()
