"""The benchmark commands run as documented (their timings are reported, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_run_profile_runs_the_profiler_on_the_named_preset():
    # A process of its own: the command tunes malloc process-wide.
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profile", "--preset", "lenet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("lenet (preset order), batch 64: median step")
    assert "conv2" in run.stdout and "loss+optimizer" in run.stdout


def test_bench_run_records_the_revision_it_measured():
    from bench.run import revision

    if not (ROOT / ".git").exists():
        assert revision() is None
        return
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    assert revision() in (head, head + "+changes")
