"""One small training run, the same in a single process, in threads and under mpiexec.

As a script (the MPI test): python -m tests.train.data_parallel OUT [sync]
trains one epoch on every rank and writes each rank's final state to OUT/rank-R.npz.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from faltung import Sequential
from faltung.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SyncBatchNorm2D
from faltung.losses import SoftmaxCrossEntropy
from faltung.optim import SGD
from faltung.train import Trainer

from ..synthetic import synthetic_arrays

# 245 images in batches of 64: three full batches and a last one of 53, which splits
# unevenly (27 + 26 on two ranks).
N_TRAIN, BATCH = 245, 64


def data():
    arrays = synthetic_arrays(N_TRAIN, 40, seed=4)
    x = arrays["train_images"][:, None].astype(np.float32) / 255
    xt = arrays["test_images"][:, None].astype(np.float32) / 255
    return (x, arrays["train_labels"].astype(np.int64)), (
        xt,
        arrays["test_labels"].astype(np.int64),
    )


def model(norm: str = "none", comm=None) -> Sequential:
    """norm: 'none', 'batch' (per-rank statistics) or 'sync' (statistics over all ranks)."""
    layers = [("conv", Conv2D(1, 4, 5, stride=2))]
    if norm == "batch":
        layers.append(("bn", BatchNorm2D(4)))
    if norm == "sync":
        layers.append(("bn", SyncBatchNorm2D.from_batch_norm(BatchNorm2D(4), process_group=comm)))
    layers += [("relu", ReLU()), ("pool", MaxPool2D(2)), ("flat", Flatten()),
               ("fc", Dense(4 * 6 * 6, 10))]  # fmt: skip
    return Sequential(layers, seed=5)


def trainer(comm=None, norm="none", epochs=1, checkpoint=None, batch_size=BATCH) -> Trainer:
    net = model(norm, comm)
    train, test = data()
    return Trainer(
        net, SoftmaxCrossEntropy(), SGD(net.parameters(), lr=0.1, momentum=0.9), train,
        epochs=epochs, batch_size=batch_size, test_data=test, seed=3, comm=comm,
        checkpoint_path=checkpoint,
    )  # fmt: skip


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


if __name__ == "__main__":
    from faltung.distributed import world

    out = Path(sys.argv[1])
    comm = world()
    run = trainer(comm, norm=sys.argv[2] if len(sys.argv) > 2 else "none")
    history = run.fit()
    state = run.model.state_dict()
    state["history_loss"] = np.asarray(history.last["loss"])
    state["test_acc"] = np.asarray(history.last["test_acc"])
    np.savez(out / f"rank-{comm.rank}.npz", **state)
