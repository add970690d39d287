"""What the per-layer training statistics cost, as a share of an epoch of the article's run.

    python -m bench.insight_cost [--repeats 3] [--probe 128]

Times 200 training steps of the article network at its batch size (5), scales them to its
epoch (10,000 images), and times one ``layer_statistics`` call on a probe batch, as
``LayerStatistics`` makes after every epoch. Random images: the cost does not depend on them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from faltung.losses import SoftmaxCrossEntropy
from faltung.optim import SGD
from faltung.presets import PRESETS, article_network
from faltung.train import Trainer
from faltung.train.insight import layer_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probe", type=int, default=128, help="probe batch size (default 128)")
    args = parser.parse_args()
    settings = PRESETS["article"].defaults
    batch, epoch_images = settings["batch_size"], settings["train_size"]
    rng = np.random.default_rng(0)
    x = rng.random((1000, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, len(x))
    model = article_network(0)
    optimizer = SGD(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    trainer = Trainer(model, SoftmaxCrossEntropy(), optimizer, (x, y), epochs=1, batch_size=batch)
    loss, steps = trainer.loss, 200
    for _ in range(args.repeats):
        model.train()
        started = time.perf_counter()
        for s in range(steps):
            xb, yb = x[s * batch : (s + 1) * batch], y[s * batch : (s + 1) * batch]
            loss.forward(model.forward(xb), yb)
            model.backward(loss.backward())
            optimizer.step()
        epoch = (time.perf_counter() - started) / steps * (epoch_images / batch)
        started = time.perf_counter()
        layer_statistics(trainer, x[: args.probe], y[: args.probe])
        cost = time.perf_counter() - started
        print(f"epoch {epoch:.1f} s (from {steps} steps); statistics of {args.probe} images "
              f"{cost * 1e3:.0f} ms = {100 * cost / epoch:.2f}% of an epoch")  # fmt: skip


if __name__ == "__main__":
    main()
