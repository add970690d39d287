"""Data-parallel training on this machine: one process against N ranks under mpiexec.

    python -m bench.mpi                      # the table (lenet; global batches 5, 64, 256)
    python -m bench.mpi --json out.json      # and the figures as JSON
    python -m bench.mpi --preset article --batches 64 --repeats 3

For each global batch it runs, in alternation, one process with 2 BLAS threads, 2 ranks
(mpiexec -n 2) with 1 thread each, and one process with 1 thread (the compute per image
that the cost model in bench/NOTES.md needs). Each run trains the Trainer for a fixed
number of images on synthetic MNIST-shaped data and reports images/s from rank 0's step
times. "allreduce ms/step" is rank 0's time inside the step's one Allreduce, which includes
waiting for the slower rank; "bare" is the same Allreduce repeated back to back after a
barrier, the pure cost of moving the gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (("1 process, 2 threads", 1, 2), ("2 ranks, 1 thread each", 2, 1),
           ("1 process, 1 thread", 1, 1))  # fmt: skip


def worker(preset: str, batch: int, images: int) -> dict:
    """One measurement, run in the process (or on every rank) being measured."""
    from faltung.distributed import world
    from faltung.losses import SoftmaxCrossEntropy
    from faltung.presets import PRESETS
    from faltung.train import Trainer

    comm = world()
    model = PRESETS[preset].build(0)
    rng = np.random.default_rng(0)
    steps = max(3, images // batch)
    x = rng.random((steps * batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch)
    from faltung.optim import SGD

    trainer = Trainer(
        model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01, momentum=0.9), (x, y),
        epochs=1, batch_size=batch, comm=comm,
    )  # fmt: skip
    trainer.fit()
    row = trainer.history.last
    # The first steps warm caches and BLAS; the step times are summed over all of them.
    result = {
        "images_per_s": steps * batch / row["seconds"],
        "step_ms": 1000 * row["seconds"] / steps,
        "allreduce_ms_per_step": 0.0,
        "bare_allreduce_ms": 0.0,
        "gradient_mb": sum(p.value.nbytes for p in trainer.optimizer.params) / 1e6,
    }
    if trainer.reducer is not None:
        result["allreduce_ms_per_step"] = 1000 * trainer.reducer.seconds / steps
        buffer = trainer.reducer.buffer
        comm.barrier()
        started = time.perf_counter()
        for _ in range(50):
            comm.allreduce_(buffer)
        result["bare_allreduce_ms"] = 1000 * (time.perf_counter() - started) / 50
    return result


def measure(preset: str, batch: int, images: int, ranks: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
    command = [sys.executable, "-m", "bench.mpi", "--worker", preset, str(batch), str(images)]
    if ranks > 1:
        beside = Path(sys.executable).parent / "mpiexec"  # where pip's mpich puts it
        launcher = str(beside) if beside.is_file() else shutil.which("mpiexec") or "mpiexec"
        command = [launcher, "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def smallest_batch(
    compute_ms: float,
    overhead_ms: float,
    gradient_mb: float,
    ranks: int,
    gbit_s: float,
    latency_us: float = 20.0,
) -> tuple[int, float]:
    """The per-rank batch b from which a ring Allreduce takes under 10% of a step.

    Step: overhead + b * compute + comm, with comm = 2 (N-1)/N * S / bandwidth (each rank
    sends and receives that much in reduce-scatter + all-gather) + 2 (N-1) * latency.
    Under 10%: comm <= (overhead + b * compute) / 9.
    """
    transfer_ms = 2 * (ranks - 1) / ranks * gradient_mb * 8 / gbit_s  # MB * 8 / (Gb/s) = ms
    comm_ms = transfer_ms + 2 * (ranks - 1) * latency_us / 1e3
    b = max(1, int(np.ceil((9 * comm_ms - overhead_ms) / compute_ms)))
    return b, comm_ms


def cost_model(rows: list[dict]) -> list[str]:
    """The table of bench/NOTES.md from the one-thread rows: compute per image and per-step
    overhead from a least-squares line through (batch, step time)."""
    single = [(r["batch"], r["step_ms"]) for r in rows if r["config"] == CONFIGS[2][0]]
    compute, overhead = np.polyfit(*zip(*single), 1)
    overhead = max(0.0, overhead)
    gradient = rows[0]["gradient_mb"]
    lines = [f"compute {compute:.3f} ms/image, overhead {overhead:.2f} ms/step, "
             f"gradient {gradient:.2f} MB, latency 20 us per message"]  # fmt: skip
    lines.append(f"{'N':>4}  {'10 Gb/s: comm ms, b':>20}  {'100 Gb/s: comm ms, b':>21}")
    for n in (2, 4, 8, 16, 64, 256):
        parts = [smallest_batch(compute, overhead, gradient, n, g) for g in (10, 100)]
        lines.append(f"{n:>4}  " + "  ".join(f"{c:>13.2f} {b:>6}" for b, c in parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lenet")
    parser.add_argument("--batches", type=int, nargs="+", default=[5, 64, 256])
    parser.add_argument("--images", type=int, default=1536, help="images per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--worker", nargs=3, metavar=("PRESET", "BATCH", "IMAGES"))
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        from faltung.distributed import world

        if world().is_root:
            print(json.dumps(result))
        return
    rows = []
    for batch in args.batches:
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in CONFIGS}
        for _ in range(args.repeats):  # alternate, so that the machine's drift hits all alike
            for name, ranks, threads in CONFIGS:
                runs[name].append(measure(args.preset, batch, args.images, ranks, threads))
        for name, _, _ in CONFIGS:
            median = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
            rows.append({"batch": batch, "config": name, **median})
    print(f"{args.preset}: median of {args.repeats} runs of {args.images} images each")
    print(f"{'batch':>5}  {'configuration':<24} {'images/s':>9} {'step ms':>8} "
          f"{'allreduce ms/step':>18} {'bare':>6}")  # fmt: skip
    for r in rows:
        print(f"{r['batch']:>5}  {r['config']:<24} {r['images_per_s']:>9.0f} {r['step_ms']:>8.2f} "
              f"{r['allreduce_ms_per_step']:>18.3f} {r['bare_allreduce_ms']:>6.3f}")  # fmt: skip
    print(f"gradient: {rows[0]['gradient_mb']:.2f} MB")
    if len(args.batches) > 1:
        print("\n".join(cost_model(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
