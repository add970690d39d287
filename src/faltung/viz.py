"""Plots with matplotlib (an optional extra), always on the headless Agg backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._atomic import atomic_write
from .train.history import History


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")


def plot_history(history: History, directory: str | Path) -> list[Path]:
    """loss.png (the article's figure: loss per epoch) and accuracy.png. [] without matplotlib."""
    plt = _pyplot()
    if plt is None or not history.rows:
        return []
    directory = Path(directory)
    epochs = history.column("epoch")
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history.column("loss"), marker="o", markersize=3, label="training loss")
    if any(v is not None for v in history.column("test_loss")):
        ax.plot(epochs, history.column("test_loss"), marker="s", markersize=3, label="test loss")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, directory / "loss.png")
    plt.close(fig)
    written.append(directory / "loss.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        values = history.column(key)
        if any(v is not None for v in values):
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
    ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, directory / "accuracy.png")
    plt.close(fig)
    written.append(directory / "accuracy.png")
    return written


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: str | Path) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    k = len(confusion)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix",
    )
    ax.set_xticklabels(list(classes)[:k], rotation=45, ha="right")
    ax.set_yticklabels(list(classes)[:k])
    threshold = confusion.max() / 2
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(confusion[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if confusion[i, j] > threshold else "black",
            )
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)
