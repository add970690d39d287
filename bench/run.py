"""Benchmarks: faltung against PyTorch on the same CPU, interleaved in one run.

    python -m bench.run                 # the table
    python -m bench.run --json out.json # and the figures as JSON
    python -m bench.run --profile       # where a training step spends its time, per layer
    python -m bench.run --quick         # fewer points, for a smoke test

The article and lenet presets run in their own layer order (conv -> pool -> ReLU) and in
the textbooks' (conv -> ReLU -> pool), the resnet preset (batch norm, residual blocks)
and PyTorch's MNIST example network (``bench.networks``) as they are, in both
frameworks. GFLOP/s count the multiply-adds of the convolutions and dense layers, and
are also given as a fraction of the measured float32 matmul peak. Ours and PyTorch's are
measured in alternating windows (``--repeats`` pairs of windows of at least
``--seconds`` each, which of the two goes first alternating too); a window's figure is
its median call, and the min, median and max over the windows are reported. The ratio is
the median of the window-by-window ratios: a shared machine's speed drifts within
minutes (bench/NOTES.md), and the two windows of a pair, a second apart, see the same
machine, where the medians of each side's windows can come from different minutes. Only
ratios from the same run are meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from bench.networks import NETWORKS, ORDERS, numpy_network, orders
from faltung import __version__
from faltung._threads import THREAD_VARIABLES
from faltung.losses import SoftmaxCrossEntropy
from faltung.memory import tune_malloc
from faltung.optim import SGD
from faltung.summary import count_flops, training_step_flops

INPUT = (1, 28, 28)
ROOT = Path(__file__).resolve().parents[1]


class NumpyRunner:
    def __init__(self, network: str, lr: float = 0.005, order: str = "preset") -> None:
        self.model = numpy_network(network, order)
        self.loss = SoftmaxCrossEntropy()
        self.optimizer = SGD(self.model.parameters(), lr=lr, weight_decay=1e-4)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.model.train()
        logits = self.model.forward(images)
        self.loss.forward(logits, labels)
        self.model.backward(self.loss.backward())
        self.optimizer.step()

    def infer(self, images: np.ndarray) -> None:
        self.model.eval()
        self.model.forward(images)


def revision() -> str | None:
    """The git revision measured, with "+changes" when the tree differs from it; None
    outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
    except OSError:  # no git
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if changes.stdout.strip() else "")


def blas_threads() -> int:
    """The threads our BLAS runs on (its environment variables, else every core): PyTorch
    gets as many, so that both compute on the same cores."""
    for variable in THREAD_VARIABLES:
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def torch_runner(network: str, order: str = "preset"):
    from bench.torch_models import TorchRunner

    return TorchRunner(network, threads=blas_threads(), order=order)


def make_call(
    factory, network: str, order: str, mode: str, x: np.ndarray, y: np.ndarray
) -> Callable[[], None]:
    """A fresh runner's training step or inference on (x, y), as a no-argument call."""
    runner = factory(network, order=order)
    if mode == "train":
        return lambda: runner.train_step(x, y)
    return lambda: runner.infer(x)


def timed(fn: Callable[[], None], min_seconds: float) -> float:
    """Typical seconds per call of ``fn``: the median of calls filling ``min_seconds``.

    The median, not the mean, because this shared machine's interference comes in spikes
    that would otherwise decide the figure; both frameworks are measured the same way.
    """
    fn()  # warm-up: first-touch page faults, BLAS buffers
    times: list[float] = []
    start = time.perf_counter()
    while True:
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
        if time.perf_counter() - start >= min_seconds and len(times) >= 3:
            return statistics.median(times)


def throughput_pair(
    make_ours: Callable[[], Callable[[], None]],
    make_theirs: Callable[[], Callable[[], None]] | None,
    images_per_call: int,
    repeats: int,
    min_seconds: float,
) -> dict[str, dict[str, float] | float]:
    """images/s of ours and theirs ({"max", "median", "min"} over ``repeats`` windows each)
    and, with theirs, "ratio": the median over the pairs of windows of ours / theirs.

    The windows alternate, and so does which of a pair runs first, so that neither side
    always follows the other (and inherits its caches, or its threads still spinning).
    """
    calls = {"ours": make_ours()}
    if make_theirs is not None:
        calls["torch"] = make_theirs()
    rates: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            rates[name].append(images_per_call / timed(calls[name], min_seconds))
    result: dict[str, dict[str, float] | float] = {
        name: {"max": max(v), "median": statistics.median(v), "min": min(v)}
        for name, v in rates.items()
    }
    if "torch" in rates:
        result["ratio"] = statistics.median(a / b for a, b in zip(rates["ours"], rates["torch"]))
    return result


def matmul_peak(repeats: int = 5) -> float:
    """Measured float32 GEMM GFLOP/s of this machine's BLAS (2048^3)."""
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    b = a.copy()
    best = min(timed(lambda: a @ b, 0.3) for _ in range(repeats))
    return 2 * 2048**3 / best / 1e9


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def data(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((batch, *INPUT), dtype=np.float32), rng.integers(0, 10, batch)


def peak_rss_of_epoch(
    framework: str, preset: str, batch: int, images: int, default_malloc: bool = False
) -> float:
    """Peak resident set (MiB) of a fresh process that trains one epoch of ``images``."""
    # ``-m`` from the repository root puts the root on sys.path, so ``bench`` imports.
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", "--epoch-worker", framework, preset, str(batch),
         str(images)] + (["--default-malloc"] if default_malloc else []),
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def epoch_worker(framework: str, preset: str, batch: str, images: str) -> None:
    """Train one epoch; print the peak resident set of the training alone, in MiB.

    The dataset is made first, in chunks, and the kernel's peak counter is then reset
    (/proc/self/clear_refs), so what is measured is what training adds on top of the data
    that both frameworks hold alike.
    """
    batch_size, n = int(batch), int(images)
    rng = np.random.default_rng(1)
    x = np.empty((n, *INPUT), np.float32)
    for start in range(0, n, 4096):
        x[start : start + 4096] = rng.random((min(4096, n - start), *INPUT), dtype=np.float32)
    y = rng.integers(0, 10, n)
    if framework == "torch":
        from bench.torch_models import TorchRunner

        runner = TorchRunner(preset, threads=blas_threads())
    else:
        runner = NumpyRunner(preset)
    reset = Path("/proc/self/clear_refs")
    if reset.exists():
        reset.write_text("5")
    for start in range(0, n, batch_size):
        runner.train_step(x[start : start + batch_size], y[start : start + batch_size])
    print(peak_rss_mib())


def peak_rss_mib() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--repeats", type=int, default=9, help="pairs of windows, ours and PyTorch's"
    )
    parser.add_argument("--seconds", type=float, default=0.35, help="minimum seconds per window")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="article preset, its own layer order, two batches; memory over 6,400 images",
    )
    parser.add_argument(
        "--network",
        "--preset",
        nargs="+",
        choices=NETWORKS,
        help="the networks to measure: presets, or PyTorch's example (default: all; "
        "--quick: article)",
    )
    parser.add_argument("--profile", action="store_true", help="per-layer profile and exit")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--wall",
        action="store_true",
        help="also time `faltung train --preset article` and a lenet epoch (minutes)",
    )
    parser.add_argument("--data", help="MNIST directory for --wall")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (the command line tunes it: faltung.memory)",
    )
    parser.add_argument("--epoch-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # One process runs both frameworks, so the tuning applies to PyTorch's arrays as well.
    malloc_tuned = not args.default_malloc and tune_malloc()
    if args.epoch_worker:
        epoch_worker(*args.epoch_worker)
        return 0
    if args.profile:
        from bench.profile import main as profile_main

        # Its own arguments, not this command line's (which holds --profile).
        return profile_main(["--network", args.network[0]] if args.network else [])

    threads = blas_threads()
    use_torch = not args.no_torch and torch_available()
    networks = args.network or (["article"] if args.quick else list(NETWORKS))
    train_batches = [5, 64] if args.quick else [5, 64, 256]
    infer_batches = [64, 1000]
    peak = matmul_peak()
    report: dict = {
        "faltung": __version__,
        "revision": revision(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "malloc": "tuned" if malloc_tuned else "default",
        "matmul_peak_gflops": round(peak, 1),
        "torch": None,
        "results": [],
    }
    if use_torch:
        import torch

        report["torch"] = torch.__version__
        torch.set_num_threads(threads)
    print(
        f"faltung {__version__} ({report['revision'] or 'no git revision'}), "
        f"NumPy {np.__version__}, "
        f"PyTorch {report['torch'] or ('skipped' if args.no_torch else 'not installed')}; "
        f"{threads} thread{'s' if threads != 1 else ''}; "
        f"malloc {report['malloc']}; float32 matmul peak {peak:.0f} GFLOP/s"
    )

    rows = []
    runs = [(n, o) for n in networks for o in (ORDERS[:1] if args.quick else orders(n))]
    for network, order in runs:
        layer_flops = count_flops(numpy_network(network, order), INPUT)
        flops, step_flops = sum(layer_flops.values()), training_step_flops(layer_flops)
        for mode, batches in (("train", train_batches), ("infer", infer_batches)):
            for batch in batches:
                x, y = data(batch)
                ours = partial(make_call, NumpyRunner, network, order, mode, x, y)
                theirs = (
                    partial(make_call, torch_runner, network, order, mode, x, y)
                    if use_torch
                    else None
                )
                result = throughput_pair(ours, theirs, batch, args.repeats, args.seconds)
                per_image = step_flops if mode == "train" else flops
                row = {
                    "network": network, "order": order, "mode": mode, "batch": batch,
                    "ours_img_s": result["ours"],
                    "ours_gflops": round(result["ours"]["median"] * per_image / 1e9, 1),
                    "ours_peak_fraction": round(
                        result["ours"]["median"] * per_image / 1e9 / peak, 3
                    ),
                }  # fmt: skip
                if "torch" in result:
                    row["torch_img_s"] = result["torch"]
                    row["ratio"] = round(result["ratio"], 2)
                rows.append(row)
                print(format_row(row), flush=True)
    report["results"] = rows

    images = 6400 if args.quick else 60000
    memory = {"ours_mib": peak_rss_of_epoch("numpy", "lenet", 64, images, args.default_malloc)}
    if use_torch:
        memory["torch_mib"] = peak_rss_of_epoch("torch", "lenet", 64, images, args.default_malloc)
        memory["ratio"] = round(memory["ours_mib"] / memory["torch_mib"], 2)
    report["peak_rss_lenet_epoch_batch64"] = memory
    print(
        f"peak RSS of a lenet epoch ({images:,} images) at batch 64: "
        f"ours {memory['ours_mib']:.0f} MiB"
        + (
            f", PyTorch {memory['torch_mib']:.0f} MiB (ratio {memory['ratio']})"
            if use_torch
            else ""
        )
    )

    if args.wall:
        data_flag = ["--data", args.data] if args.data else []
        out = "/tmp/faltung-bench-wall"
        report["wall_article_s"] = round(wall_time(
            ["faltung", "train", "--preset", "article", "--out", out + "-a", "--overwrite",
             "--no-plots", *data_flag]), 1)  # fmt: skip
        report["wall_lenet_epoch_s"] = round(wall_time(
            ["faltung", "train", "--preset", "lenet", "--epochs", "1", "--out", out + "-l",
             "--overwrite", "--no-plots", *data_flag]), 1)  # fmt: skip
        print(
            f"wall time: faltung train --preset article {report['wall_article_s']} s; "
            f"one lenet epoch (60,000 images, batch 64) {report['wall_lenet_epoch_s']} s"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


def format_row(row: dict) -> str:
    ours = row["ours_img_s"]
    text = (
        f"{row['network']:>15} {row['order']:>8} {row['mode']:>5} batch {row['batch']:>4}: ours "
        f"{ours['median']:7.0f} img/s (min {ours['min']:.0f}, max {ours['max']:.0f}; "
        f"{row['ours_gflops']:.0f} GFLOP/s, {row['ours_peak_fraction']:.0%} of peak)"
    )
    if "torch_img_s" in row:
        text += f"  torch {row['torch_img_s']['median']:7.0f} img/s  ratio {row['ratio']:.2f}"
    return text


if __name__ == "__main__":
    sys.exit(main())
