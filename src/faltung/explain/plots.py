"""Pictures of what a network computes (matplotlib, an optional extra; headless Agg).

Every function returns the path it wrote, or None when matplotlib is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..viz import _pyplot, _save


def _grid(count: int, max_columns: int = 10) -> tuple[int, int]:
    columns = min(count, max_columns, max(1, math.ceil(math.sqrt(count * 1.6))))
    return math.ceil(count / columns), columns


def _show(ax, image: np.ndarray, **kwargs) -> None:
    """(C, H, W) grey or colour, or (H, W), without axes."""
    if image.ndim == 3 and image.shape[0] == 3:
        ax.imshow(np.clip(np.moveaxis(image, 0, -1), 0, 1), interpolation="nearest")
    else:
        grey = image[0] if image.ndim == 3 else image
        ax.imshow(grey, cmap=kwargs.get("cmap", "gray"), interpolation="nearest",
                  vmin=kwargs.get("vmin"), vmax=kwargs.get("vmax"))  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def as_map_stack(output: np.ndarray) -> np.ndarray:
    """A layer output as (channels, H, W) images: vectors become one near-square image."""
    if output.ndim == 3:
        return output
    flat = output.reshape(-1)
    side = math.ceil(math.sqrt(flat.size))
    padded = np.full(side * side, np.nan, dtype=np.float32)
    padded[: flat.size] = flat
    return padded.reshape(1, side, side)


def mosaic(tiles: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """(N, h, w) tiles in a grid with NaN gaps (drawn as background), for one imshow."""
    n, h, w = tiles.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, np.float32)
    for k in range(n):  # one slice per tile, not per pixel
        r, c = divmod(k, columns)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[k]
    return grid


def _mosaic_figure(plt, tiles, labels, columns, cmap, vmin, vmax, title, path, gap=None):
    n, h, w = tiles.shape
    gap = gap if gap is not None else max(1, round(0.2 * max(h, w)))
    grid = mosaic(tiles, columns, gap)
    rows = math.ceil(n / columns)
    scale = min(1.2, max(0.45, 4.0 / max(h, w))) if n > 1 else 3.0 / max(h, w)
    width = max(3.5, grid.shape[1] * scale * 0.1 * 2.2)
    height = width * grid.shape[0] / grid.shape[1] + 0.5
    fig, ax = plt.subplots(figsize=(width, height))
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    ax.imshow(grid, cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
    if labels is not None and n > 1:
        for k, label in enumerate(labels):
            r, c = divmod(k, columns)
            ax.text(c * (w + gap) + w / 2, r * (h + gap) - 0.6, label, ha="center", va="bottom",
                    fontsize=6)  # fmt: skip
    ax.axis("off")
    ax.set_title(title, fontsize=9, pad=14 if rows > 1 else 8)
    _save(fig, Path(path))
    return Path(path)


def plot_feature_maps(output: np.ndarray, title: str, path: str | Path) -> Path | None:
    """One layer's output for one image: each channel a small labelled image, one scale.

    All channels share the layer's colour scale, so a dead channel looks dark next to a
    busy one; a vector (a dense layer) is drawn as one grid of its units.
    """
    plt = _pyplot()
    if plt is None:
        return None
    maps = as_map_stack(np.asarray(output, dtype=np.float32))
    low, high = float(np.nanmin(maps)), float(np.nanmax(maps))
    _, columns = _grid(len(maps))
    labels = [str(k) for k in range(len(maps))]
    return _mosaic_figure(plt, maps, labels, columns, "viridis", low, high,
                          f"{title}   [range {low:.3g} .. {high:.3g}]", path)  # fmt: skip


def plot_filters(weights: np.ndarray, title: str, path: str | Path) -> Path | None:
    """Convolution weights (out, in, kh, kw) on a shared diverging scale: a row per output
    channel and a column per input channel (one-input-channel filters fill a grid)."""
    plt = _pyplot()
    if plt is None:
        return None
    out_c, in_c, kh, kw = weights.shape
    bound = float(np.abs(weights).max()) or 1.0
    if in_c == 1:
        tiles, columns = weights[:, 0], _grid(out_c)[1]
        labels = [str(o) for o in range(out_c)]
    else:
        tiles, columns = weights.reshape(out_c * in_c, kh, kw), in_c
        labels = [f"{o}/{i}" for o in range(out_c) for i in range(in_c)]
    heading = f"{title}   [blue < 0 < red, |w| <= {bound:.3g}]"
    tiles = np.asarray(tiles, np.float32)
    return _mosaic_figure(plt, tiles, labels, columns, "RdBu_r", -bound, bound, heading, path)


def plot_attribution(
    image: np.ndarray, heat: np.ndarray, title: str, path: str | Path, signed: bool = False
) -> Path | None:
    """The input, the attribution map, and the map laid over the input."""
    plt = _pyplot()
    if plt is None:
        return None
    heat = np.asarray(heat, dtype=np.float32)
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.9), layout="constrained")
    _show(axes[0], image)
    axes[0].set_title("input", fontsize=9)
    if signed:
        bound = float(np.abs(heat).max()) or 1.0
        shown = axes[1].imshow(heat, cmap="RdBu_r", vmin=-bound, vmax=bound)
    else:
        shown = axes[1].imshow(heat, cmap="inferno")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    axes[1].set_title("map", fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, format="%.2g")
    _show(axes[2], image)
    strength = np.abs(heat) / (np.abs(heat).max() or 1.0)
    overlay = np.zeros((*heat.shape, 4), np.float32)
    overlay[..., 0] = np.where(heat >= 0, 1.0, 0.1)
    overlay[..., 1] = 0.15
    overlay[..., 2] = np.where(heat >= 0, 0.1, 1.0)
    overlay[..., 3] = 0.85 * strength
    axes[2].imshow(overlay, interpolation="nearest")
    axes[2].set_title("overlay", fontsize=9)
    fig.suptitle(title, fontsize=10)
    _save(fig, Path(path))
    return Path(path)


def plot_probabilities(
    probabilities: np.ndarray, classes: Sequence[str], title: str, path: str | Path
) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    k = len(probabilities)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * k + 1.5), 2.8))
    colours = ["tab:orange" if i == int(np.argmax(probabilities)) else "tab:blue" for i in range(k)]
    ax.bar(range(k), probabilities, color=colours)
    ax.set_xticks(range(k))
    ax.set_xticklabels(list(classes)[:k], rotation=45 if k > 12 else 0, fontsize=8)
    ax.set(ylim=(0, 1), ylabel="probability", title=title)
    for i, p in enumerate(probabilities):
        if p >= 0.01:
            ax.text(i, p + 0.02, f"{p:.2f}", ha="center", fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, Path(path))
    return Path(path)


def plot_gallery(
    images: np.ndarray,
    captions: Sequence[str],
    title: str,
    path: str | Path,
) -> Path | None:
    """A grid of images (N, C, H, W), each with a caption underneath."""
    plt = _pyplot()
    if plt is None:
        return None
    rows, columns = _grid(max(1, len(images)), 8)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.35 + 0.4, rows * 1.6 + 0.6),
                             squeeze=False)  # fmt: skip
    for k, ax in enumerate(axes.flat):
        if k < len(images):
            _show(ax, images[k])
            ax.set_xlabel(captions[k], fontsize=7)
        else:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    _save(fig, Path(path))
    return Path(path)


def plot_layer_statistics(history, path: str | Path) -> Path | None:
    """layers.png: per layer and epoch, activation mean and spread, the fractions of ReLU
    zeros and saturated sigmoids, and the gradient norm (from ``train.insight``)."""
    plt = _pyplot()
    rows = history.rows
    if plt is None or not rows or not any(k.endswith(".mean") for k in rows[-1]):
        return None
    epochs = [row["epoch"] for row in rows]
    keys = [k for row in rows for k in row]

    def series(suffix):
        names = list(dict.fromkeys(k[: -len(suffix)] for k in keys if k.endswith(suffix)))
        return {n: [row.get(n + suffix) for row in rows] for n in names}

    # One colour per layer in every panel, in the order the layers run.
    names = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in keys if "." in k))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colour = {name: palette(i % palette.N) for i, name in enumerate(names)}
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [
        (axes[0, 0], series(".mean"), "activation mean", "mean of each layer's output"),
        (axes[0, 1], series(".std"), "activation std", "spread of each layer's output"),
        (axes[1, 1], series(".grad_norm"), "gradient norm", "norm of each layer's gradient"),
    ]
    for ax, lines, ylabel, title in panels:
        for name, values in lines.items():
            ax.plot(epochs, values, marker="o", markersize=3, label=name, color=colour[name])
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    if any(v for vs in series(".grad_norm").values() for v in vs if v):
        axes[1, 1].set_yscale("log")
    ax = axes[1, 0]
    for name, values in series(".zero_frac").items():
        ax.plot(epochs, values, marker="o", markersize=3, label=f"{name}: zeros",
                color=colour[name])  # fmt: skip
    for name, values in series(".saturated").items():
        ax.plot(epochs, values, marker="s", markersize=3, linestyle="--",
                label=f"{name}: saturated", color=colour[name])  # fmt: skip
    ax.set(xlabel="epoch", ylabel="fraction of outputs", ylim=(-0.02, 1.02),
           title="ReLU outputs at 0, sigmoid outputs > 0.99 or < 0.01")  # fmt: skip
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("Inside the layers, epoch by epoch (a fixed probe batch of training images)")
    fig.tight_layout()
    _save(fig, Path(path))
    return Path(path)
