"""faltung.memory: glibc's malloc keeps freed memory, so repeated calls stop faulting pages.

Each check runs in a fresh process: the settings are process-wide and one-way.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from faltung import cli


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError, TypeError):
        return False
    return True


needs_glibc = pytest.mark.skipif(not _glibc(), reason="tune_malloc is for glibc only")

# Page faults over three eval-mode forward passes, after two to warm up: a network whose
# activations (about 3 MB per layer at batch 64) are well above glibc's first thresholds.
FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from faltung.memory import tune_malloc
    applied = tune_malloc() if sys.argv[1] == "tuned" else False
    import faltung as fl
    from faltung.layers import BatchNorm2D, Conv2D, Flatten, Dense, ReLU
    model = fl.Sequential([
        ("conv1", Conv2D(1, 16, 3, padding=1, bias=False)), ("bn1", BatchNorm2D(16)),
        ("relu1", ReLU()), ("conv2", Conv2D(16, 16, 3, stride=2, padding=1)),
        ("relu2", ReLU()), ("flatten", Flatten()), ("fc", Dense(16 * 14 * 14, 10)),
    ], seed=0).eval()
    x = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    for _ in range(2):
        model.forward(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model.forward(x)
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str, env: dict[str, str] | None = None) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.split()  # fmt: skip
    return out[0] == "True", int(out[1])


@needs_glibc
def test_tuned_malloc_stops_repeated_page_faults():
    applied, tuned = _faults("tuned")
    assert applied
    # Untuned, the same three calls faulted 5,514 pages on this project's machine.
    assert tuned <= 16


@needs_glibc
def test_a_users_own_malloc_settings_stand():
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "65536"}
    applied, _ = _faults("tuned", env)
    assert not applied


def test_the_command_line_tunes_malloc_before_any_work(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "tune_malloc", lambda: calls.append(True) or True)
    assert cli.main(["summary", "--preset", "article"]) == 0
    assert calls == [True]
    assert "conv1" in capsys.readouterr().out
