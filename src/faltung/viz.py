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


def _line_plot(plt, epochs, series, ylabel: str, title: str, path: Path) -> Path:
    """One figure of per-epoch curves; ``series`` maps a label to its values (or Nones)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        if any(v is not None for v in values):
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_history(history: History, directory: str | Path) -> list[Path]:
    """loss.png (the article's figure: loss per epoch) and accuracy.png. [] without matplotlib."""
    plt = _pyplot()
    if plt is None or not history.rows:
        return []
    directory, epochs, column = Path(directory), history.column("epoch"), history.column
    return [
        _line_plot(plt, epochs,
                   {"training loss": column("loss"), "test loss": column("test_loss")},
                   "cross-entropy", "Loss per epoch", directory / "loss.png"),
        _line_plot(plt, epochs,
                   {"train": column("train_acc"), "validation": column("val_acc"),
                    "test": column("test_acc")},
                   "accuracy", "Accuracy per epoch", directory / "accuracy.png"),
    ]  # fmt: skip


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
