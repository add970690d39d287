"""Attributions for one class: which input pixels the network's score depends on.

All gradients come from ``model.backward`` (see ``backprop.py``); nothing here
differentiates anything by hand. Images are (C, H, W); batches (N, C, H, W); uint8 pixels
are scaled to [0, 1] first. A model trained on standardised pixels is explained in the
image's pixels behind ``explain.pixels.in_pixels``.
"""

from __future__ import annotations

import numpy as np

from ..model import Sequential
from .backprop import class_gradients
from .features import as_input, predict_probabilities


def _as_batch(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {x.shape}")


def predicted_class(model: Sequential, x: np.ndarray) -> np.ndarray:
    """The arg-max class of each image of a batch, in eval mode."""
    return model.predict(x)


def saliency(
    model: Sequential, x: np.ndarray, target: int | np.ndarray | None = None
) -> np.ndarray:
    """d score[target] / d x (Simonyan et al., 2014), same shape as ``x``.

    ``target`` defaults to the predicted class. Take ``np.abs(...).max(axis=-3)`` for the
    usual one-channel saliency map.
    """
    batch, single = _as_batch(x)
    batch = as_input(model, batch)
    targets = predicted_class(model, batch) if target is None else target
    grads, _ = class_gradients(model, batch, targets)
    return grads[0] if single else grads


def gradient_x_input(
    model: Sequential, x: np.ndarray, target: int | np.ndarray | None = None
) -> np.ndarray:
    """x * d score[target] / d x: the first-order share of each pixel in the score."""
    return saliency(model, x, target) * as_input(model, np.asarray(x))


def integrated_gradients(
    model: Sequential,
    image: np.ndarray,
    target: int | None = None,
    baseline: np.ndarray | float = 0.0,
    steps: int = 64,
    batch_size: int = 64,
) -> np.ndarray:
    """Integrated gradients (Sundararajan et al., 2017) of one image (C, H, W).

    IG_i = (x_i - x'_i) * integral over a in [0, 1] of d score / d x_i at x' + a (x - x'),
    by the midpoint rule with ``steps`` points, all evaluated in batches. Completeness:
    the attributions sum to score(x) - score(baseline), up to the quadrature error.
    ``baseline`` defaults to black (zeros).
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    x = as_input(model, np.asarray(image))
    if x.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {x.shape}")
    base = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), x.shape)
    if target is None:
        target = int(predicted_class(model, x[None])[0])
    alphas = ((np.arange(steps) + 0.5) / steps).astype(x.dtype)
    path = base[None] + alphas[:, None, None, None] * (x - base)[None]
    grads, _ = class_gradients(model, path, target, batch_size)
    return (x - base) * grads.mean(axis=0)


def occlusion(
    model: Sequential,
    image: np.ndarray,
    target: int | None = None,
    patch: int | None = None,
    stride: int | None = None,
    fill: float = 0.0,
    batch_size: int = 256,
) -> np.ndarray:
    """Drop in the target's probability when a square patch is covered (Zeiler & Fergus).

    The patch (default a quarter of the shorter side) slides with ``stride`` (default a
    quarter of the patch) over the image (C, H, W); every occluded copy is built with one
    broadcast mask and evaluated in batches. Returns an (H, W) map: each pixel holds the
    mean drop over the patches that covered it. Positive means the pixel supported the class.
    """
    x = as_input(model, np.asarray(image))
    if x.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {x.shape}")
    _, h, w = x.shape
    patch = patch or max(1, min(h, w) // 4)
    stride = stride or max(1, patch // 4)
    if not 1 <= patch <= min(h, w) or stride < 1:
        raise ValueError(f"patch {patch} and stride {stride} do not fit a {h}x{w} image")
    probs = predict_probabilities(model, x[None])[0]
    if target is None:
        target = int(probs.argmax())
    reference = probs[target]
    tops = _starts(h, patch, stride)
    lefts = _starts(w, patch, stride)
    rows = (tops[:, None] <= np.arange(h)) & (np.arange(h) < tops[:, None] + patch)
    cols = (lefts[:, None] <= np.arange(w)) & (np.arange(w) < lefts[:, None] + patch)
    # Every (top, left) pair, as a flat list of masks built by broadcasting, chunk by chunk.
    pairs = np.stack(np.meshgrid(np.arange(len(tops)), np.arange(len(lefts)), indexing="ij"), -1)
    pairs = pairs.reshape(-1, 2)
    heat = np.zeros((h, w), np.float64)
    for start in range(0, len(pairs), batch_size):
        i, j = pairs[start : start + batch_size].T
        masks = rows[i][:, :, None] & cols[j][:, None, :]  # (P, H, W)
        occluded = np.where(masks[:, None], np.asarray(fill, x.dtype), x[None])
        p = predict_probabilities(model, occluded, batch_size)[:, target]
        heat += np.tensordot(reference - p, masks, axes=1)
    counts = np.tensordot(rows.sum(0), cols.sum(0), axes=0)
    return (heat / counts).astype(x.dtype)


def _starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Window starts that cover every pixel: a regular grid plus the last full window."""
    starts = np.arange(0, size - patch + 1, stride)
    return np.unique(np.append(starts, size - patch))
