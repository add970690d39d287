"""Before and after: training steps of an earlier revision and of this tree, interleaved.

    python -m bench.ab --before REV [--preset article] [--batch 5 64 256] [--seconds 2]

The earlier revision's package is exported from git into a temporary directory under the
name ``faltung_before`` (the package imports itself relatively, so both load in one
process), and the two versions' training steps alternate in rounds, so that the
machine's drift hits both alike. Reports the median step of each and the ratio.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from faltung.memory import tune_malloc

ROOT = Path(__file__).resolve().parents[1]


def import_revision(rev: str, directory: Path):
    """Import ``src/faltung`` of git revision ``rev`` as the package ``faltung_before``."""
    archive = subprocess.run(
        ["git", "archive", rev, "src/faltung"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    (directory / "src" / "faltung").rename(directory / "faltung_before")
    sys.path.insert(0, str(directory))
    return importlib.import_module("faltung_before")


def step_function(package, preset: str, batch: int):
    presets = importlib.import_module(f"{package.__name__}.presets")
    losses = importlib.import_module(f"{package.__name__}.losses")
    optim = importlib.import_module(f"{package.__name__}.optim")
    model = presets.PRESETS[preset].build(0)
    loss = losses.SoftmaxCrossEntropy()
    optimizer = optim.SGD(model.parameters(), lr=0.005, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)

    def step() -> None:
        logits = model.forward(x)
        loss.forward(logits, y)
        model.backward(loss.backward())
        optimizer.step()

    return step


def median_step(step, seconds: float) -> float:
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--preset", nargs="+", default=["article", "lenet"])
    parser.add_argument("--batch", nargs="+", type=int, default=[5, 64, 256])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    tune_malloc()  # as the command line runs; both revisions share the process
    import faltung

    with tempfile.TemporaryDirectory() as tmp:
        before = import_revision(args.before, Path(tmp))
        print(f"before: {args.before}   after: this tree   median step of {args.rounds} rounds")
        print("preset   batch   before ms   after ms   after/before")
        for preset in args.preset:
            for batch in args.batch:
                steps = {
                    "before": step_function(before, preset, batch),
                    "after": step_function(faltung, preset, batch),
                }
                results: dict[str, list[float]] = {name: [] for name in steps}
                for step in steps.values():
                    step()  # warm-up
                for round_ in range(args.rounds):
                    # Alternate which goes first, so neither always follows the other.
                    order = list(steps.items())[:: 1 if round_ % 2 == 0 else -1]
                    for name, step in order:
                        results[name].append(median_step(step, args.seconds))
                b, a = (statistics.median(results[k]) * 1e3 for k in ("before", "after"))
                print(f"{preset:<8} {batch:>5} {b:>11.2f} {a:>10.2f} {a / b:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
