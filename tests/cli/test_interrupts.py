"""Nothing lost: SIGKILL at any moment, Ctrl-C, a full disk. Runs the CLI in a child process."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faltung.cli import main
from faltung.io import read_model_file

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["train", "--preset", "lenet", "--epochs", "3", "--batch-size", "10", "--train-size", "300",
        "--test-size", "50", "--no-plots"]  # fmt: skip
TIMING = {"seconds", "images_per_s", "insight_seconds"}


def start(tmp_path: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.cli.run_synthetic", str(tmp_path / "data"), *ARGS,
         "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def wait_for_epoch(process: subprocess.Popen, out: Path, epochs: int) -> None:
    """Block until the child has written the history of ``epochs`` epochs."""
    deadline = time.time() + 120
    while time.time() < deadline:
        history = out / "history.json"
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= epochs:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError("child made no progress")


def results(out: Path):
    _, arrays = read_model_file(out / "model.npz")
    history = [
        {k: v for k, v in row.items() if k not in TIMING}
        for row in json.loads((out / "history.json").read_text())
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    metrics = {
        k: v for k, v in metrics.items() if k not in ("train_seconds", "wall_seconds_this_call")
    }
    return arrays, history, metrics


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run: the reference every interrupted one must reproduce exactly."""
    tmp_path = tmp_path_factory.mktemp("straight")
    code, _, err = finish(start(tmp_path, tmp_path / "out"))
    assert code == 0, err
    return results(tmp_path / "out")


def assert_same(out: Path, reference) -> None:
    arrays, history, metrics = results(out)
    ref_arrays, ref_history, ref_metrics = reference
    assert arrays.keys() == ref_arrays.keys()
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], ref_arrays[key], err_msg=key)
    assert history == ref_history
    assert metrics == ref_metrics


def test_sigkill_mid_epoch_then_resume_is_bit_exact(tmp_path, straight):
    out = tmp_path / "out"
    process = start(tmp_path, out)
    wait_for_epoch(process, out, 2)
    time.sleep(0.05)  # somewhere inside epoch 3
    process.send_signal(signal.SIGKILL)
    process.wait()
    header, _ = read_model_file_checkpoint(out / "checkpoint.npz")
    assert header["epoch"] >= 2  # the last complete checkpoint is intact and loadable
    code, stdout, err = finish(start(tmp_path, out, "--resume"))
    assert code == 0, err
    assert "resuming at epoch" in stdout
    assert_same(out, straight)


def read_model_file_checkpoint(path: Path):
    from faltung.io import read_archive
    from faltung.train.trainer import CHECKPOINT_FORMAT

    return read_archive(path, CHECKPOINT_FORMAT)


def test_ctrl_c_saves_says_how_to_resume_and_resume_is_bit_exact(tmp_path, straight):
    out = tmp_path / "out"
    process = start(tmp_path, out)
    wait_for_epoch(process, out, 1)
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted at epoch" in lines[0]
    assert "continue with --resume" in lines[0] and "Traceback" not in err
    code, _, err = finish(start(tmp_path, out, "--resume"))
    assert code == 0, err
    assert_same(out, straight)


def test_disk_full_while_writing_leaves_no_half_file(tmp_path, monkeypatch):
    """An ENOSPC in the middle of a write keeps the old file and leaves no temporary."""
    from faltung import _atomic

    target = tmp_path / "model.npz"
    target.write_bytes(b"old model")

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    real_fdopen = os.fdopen
    monkeypatch.setattr(_atomic.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    from faltung.io import save_model
    from faltung.presets import article_network

    with pytest.raises(OSError, match="No space left"):
        save_model(article_network(0), target)
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "only 1.0 MiB free" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # checked before anything is created
