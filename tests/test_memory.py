"""faltung.memory: glibc's malloc keeps freed memory, so repeated calls stop faulting pages.

The check that tunes runs in a fresh process: the settings are process-wide and one-way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from faltung import cli, memory

needs_glibc = pytest.mark.skipif(not memory.is_glibc(), reason="tune_malloc is for glibc only")

# Page faults over three eval-mode forward passes, after ten to warm up, of a network whose
# activations (about 3 MB per layer at batch 64) lie above glibc's first thresholds. A batch
# split over threads settles over more passes than one (bench/NOTES.md, round six).
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
    for _ in range(10):
        model.forward(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model.forward(x)
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)
USER_VARIABLES = ("FALTUNG_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _faults(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k not in USER_VARIABLES + ("GLIBC_TUNABLES",)}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0] == "True", int(out[1])


@needs_glibc
def test_tuned_malloc_stops_repeated_page_faults():
    applied, tuned = _faults("tuned")
    assert applied
    # Untuned, glibc hands the freed memory back and the same calls fault thousands of pages.
    assert tuned <= 16


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FALTUNG_MALLOC", "default"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("MALLOC_TRIM_THRESHOLD_", "65536"),
        ("GLIBC_TUNABLES", "glibc.pthread.rseq=0:glibc.malloc.trim_threshold=65536"),
    ],
)
def test_a_users_own_malloc_settings_stand(monkeypatch, variable, value):
    for name in USER_VARIABLES + ("GLIBC_TUNABLES",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    assert memory.user_settings() == variable
    # Returns before touching malloc: this test process is left as it was.
    assert memory.tune_malloc() is False


def test_unrelated_glibc_tunables_do_not_count_as_a_choice(monkeypatch):
    for name in USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.pthread.rseq=0:glibc.cpu.hwcaps=-AVX512F")
    assert memory.user_settings() is None


def test_off_glibc_nothing_is_called(monkeypatch):
    monkeypatch.setattr(memory, "is_glibc", lambda: False)
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: pytest.fail("called mallopt"))
    assert memory.tune_malloc() is False


class _FakeMallopt:
    """glibc's mallopt as far as tune_malloc sees it: refuses mmap thresholds above a limit."""

    def __init__(self, refuse_above: int) -> None:
        self.calls: list[tuple[int, int]] = []
        self.refuse_above = refuse_above

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return int(parameter != memory.M_MMAP_THRESHOLD or value <= self.refuse_above)


@pytest.mark.parametrize(
    "refuse_above, applied, calls",
    [
        (1 << 40, True, [(-3, 64 << 20), (-1, 1 << 30)]),
        (32 << 20, True, [(-3, 64 << 20), (-3, 32 << 20), (-1, 1 << 30)]),  # an older glibc
        (1 << 20, False, [(-3, 64 << 20), (-3, 32 << 20)]),  # refused: nothing else is set
    ],
)
def test_the_mmap_threshold_falls_back_then_gives_up(monkeypatch, refuse_above, applied, calls):
    mallopt = _FakeMallopt(refuse_above)
    monkeypatch.setattr(memory, "is_glibc", lambda: True)
    monkeypatch.setattr(memory, "user_settings", lambda: None)
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *_: SimpleNamespace(mallopt=mallopt))
    assert memory.tune_malloc() is applied
    assert mallopt.calls == calls


@pytest.mark.parametrize("kwargs", [{"trim_threshold": 4 << 30}, {"mmap_threshold": -1}])
def test_thresholds_outside_a_c_int_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be between 0 and"):
        memory.tune_malloc(**kwargs)


def test_the_command_tunes_malloc_and_main_alone_does_not(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "tune_malloc", lambda: calls.append(True) or True)
    assert cli.main(["summary", "--preset", "article"]) == 0
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["faltung", "summary", "--preset", "article"])
    assert cli.entry() == 0
    assert calls == [True]
    assert "conv1" in capsys.readouterr().out
