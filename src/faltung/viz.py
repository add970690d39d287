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


def picture_format(path: str | Path) -> str:
    """The format ``path``'s extension names (PNG without one), checked against what
    matplotlib writes, so that a command can refuse a bad name before its work."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the file to write")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the directory {path.parent} does not exist")
    kind = path.suffix.lower().lstrip(".") or "png"
    # PGF is LaTeX code that matplotlib writes only where LaTeX is installed.
    known = {k: v for k, v in FigureCanvasBase.get_supported_filetypes().items() if k != "pgf"}
    if kind not in known:
        listed = ", ".join(f".{k}" for k in sorted(known))
        raise ValueError(f"{path}: matplotlib writes no .{kind} pictures; it writes {listed}")
    return kind


def _save(fig, path: Path) -> None:
    """Write ``fig`` in the format ``path``'s extension names, then close it."""
    import matplotlib.pyplot as plt

    try:
        kind = picture_format(path)
        with atomic_write(path) as handle:
            fig.savefig(handle, format=kind, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def _line_plot(plt, epochs, series, ylabel: str, title: str, path: Path) -> Path:
    """One figure of per-epoch curves; ``series`` maps a label to its values (or Nones)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series.items():
        if any(v is not None for v in values):
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    return path


def plot_history(
    history: History, directory: str | Path, counts: dict[str, int | None] | None = None
) -> list[Path]:
    """loss.png (the article's figure: loss per epoch) and accuracy.png. [] without matplotlib.

    ``counts`` gives the number of images behind the "test" and "validation" curves; the
    legend shows it, so that the steps of a curve on 100 images (0.01) make sense.
    """
    plt = _pyplot()
    if plt is None or not history.rows:
        return []
    directory, epochs, column = Path(directory), history.column("epoch"), history.column
    counts = counts or {}

    def label(name: str, what: str = "") -> str:
        n = counts.get(name)
        return f"{name}{what} ({n:,} images)" if n else f"{name}{what}"

    return [
        _line_plot(plt, epochs,
                   {"training loss": column("loss"), label("test", " loss"): column("test_loss")},
                   "cross-entropy", "Loss per epoch", directory / "loss.png"),
        _line_plot(plt, epochs,
                   {"train": column("train_acc"), label("validation"): column("val_acc"),
                    label("test"): column("test_acc")},
                   "accuracy", "Accuracy per epoch", directory / "accuracy.png"),
    ]  # fmt: skip


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], path: str | Path) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    k, total = len(confusion), int(confusion.sum())
    accuracy = np.trace(confusion) / max(total, 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, label="images")
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xlabel="predicted class",
        ylabel="true class",
        title=f"Confusion matrix: {total:,} images, accuracy {accuracy:.4f}",
    )
    names = [str(c) for c in list(classes)[:k]] + [str(i) for i in range(len(classes), k)]
    if max(map(len, names), default=0) > 3:  # long names (Fashion-MNIST) would overlap
        ax.set_xticklabels(names, rotation=45, ha="right")
    else:
        ax.set_xticklabels(names)
    ax.set_yticklabels(names)
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
    return Path(path)
