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


def test_throughput_pair_alternates_and_takes_the_ratio_window_by_window(monkeypatch):
    """Each pair of windows sees the same machine: the ratio is the median of the pairs'
    ratios, not of the two sides' medians, which can come from different minutes."""
    import bench.run as run

    # Seconds per call, window by window as they run. Ours is twice as fast in every pair,
    # but the machine slows down five times between the third pair's two windows.
    script = iter([1, 2, 2, 1, 1, 10, 10, 5, 5, 10])
    order: list[str] = []

    def timed(fn, min_seconds):
        order.append(fn())
        return next(script)

    monkeypatch.setattr(run, "timed", timed)
    result = run.throughput_pair(lambda: lambda: "ours", lambda: lambda: "torch", 10, 5, 0.1)
    assert order == ["ours", "torch", "torch", "ours"] * 2 + ["ours", "torch"]
    assert result["ratio"] == 2.0
    assert result["ours"] == {"max": 10.0, "median": 10.0, "min": 2.0}
    assert result["torch"] == {"max": 5.0, "median": 1.0, "min": 1.0}  # medians: 10x
    # Alone, ours has no ratio.
    script = iter([1, 1, 1])
    assert "ratio" not in run.throughput_pair(lambda: lambda: "ours", None, 10, 3, 0.1)
