"""Where a training step spends its time: each layer's forward and backward, and the rest.

    python -m bench.profile [--network article] [--order preset|textbook] [--batch 64]

Each layer is timed on every step and the median over the steps is reported, which is
robust to this machine's drift; ``--floor`` reports the fastest instead, the cost without
interference. The percentages are of the step time.

The layers run one at a time over the whole batch, in one Python thread (BLAS keeps its
own threads): a model's forward splits a batch of 64 or more over threads
(``faltung.parallel``), which this profile does not, so that each layer's cost is its own.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.networks import NETWORKS, ORDERS, numpy_network, orders
from faltung.losses import SoftmaxCrossEntropy
from faltung.memory import tune_malloc
from faltung.optim import SGD


def profile(
    network: str, batch: int, steps: int, floor: bool = False, order: str = "preset"
) -> list[tuple[str, float, float]]:
    model = numpy_network(network, order)
    loss = SoftmaxCrossEntropy()
    optimizer = SGD(model.parameters(), lr=0.005, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x_all = rng.random((batch * 8, 1, 28, 28), dtype=np.float32)
    y_all = rng.integers(0, 10, batch * 8)
    names = [layer.name for layer in model.run_order()]  # as forward runs them
    forward = {n: [] for n in names}
    backward = {n: [] for n in names}
    other, total = [], []
    for step in range(steps + 5):
        start = (step % 8) * batch
        x, y = x_all[start : start + batch], y_all[start : start + batch]
        began = time.perf_counter()
        for name in names:
            t = time.perf_counter()
            x = model.layers[name].forward(x)
            forward[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        loss.forward(x, y)
        dy = loss.backward()
        rest = time.perf_counter() - t
        for name in reversed(names):
            t = time.perf_counter()
            dy = model.layers[name].backward(dy)
            backward[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        optimizer.step()
        other.append(rest + time.perf_counter() - t)
        total.append(time.perf_counter() - began)
    skip = 5  # warm-up
    stat = min if floor else statistics.median
    rows = [(n, stat(forward[n][skip:]), stat(backward[n][skip:])) for n in names]
    rows.append(("loss+optimizer", stat(other[skip:]), 0.0))
    rows.append(("step", stat(total[skip:]), 0.0))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--network", "--preset", default="article", choices=NETWORKS)
    parser.add_argument("--order", default="preset", choices=ORDERS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument(
        "--floor", action="store_true", help="report the fastest step (noise-free floor)"
    )
    args = parser.parse_args(argv)
    if args.order not in orders(args.network):
        parser.error(f"{args.network} has one layer order, {ORDERS[0]!r}")
    tune_malloc()  # as the command line runs (faltung.memory)
    rows = profile(args.network, args.batch, args.steps, args.floor, args.order)
    step = rows[-1][1]
    print(
        f"{args.network} ({args.order} order), batch {args.batch}: "
        f"{'fastest' if args.floor else 'median'} step "
        f"{step * 1e3:.2f} ms "
        f"= {args.batch / step:.0f} images/s "
        "(not split: each layer over the whole batch, in one Python thread)"
    )
    print(f"{'layer':<16}{'forward ms':>12}{'backward ms':>13}{'share':>8}")
    for name, fw, bw in rows[:-1]:
        print(f"{name:<16}{fw * 1e3:>12.3f}{bw * 1e3:>13.3f}{(fw + bw) / step:>8.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
