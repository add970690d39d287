"""``faltung evaluate``, ``predict`` and ``summary``."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..datasets import load_dataset
from ..functional.activations import softmax
from ..images import ImageError, load_image
from ..io import load_model
from ..model import count_flops, training_step_flops
from ..presets import get_preset
from ..train import evaluate
from ..viz import plot_confusion
from .errors import UsageError
from .explain import write_mistakes_gallery


def run_evaluate(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    meta = getattr(model, "metadata", {})
    dataset = args.dataset or meta.get("dataset", "mnist")
    data = load_dataset(dataset, args.data)
    images, labels = data.test_images, data.test_labels
    if args.test_size is not None:
        if args.test_size > len(images):
            raise UsageError(f"--test-size {args.test_size} exceeds the {len(images)} test images")
        index = np.sort(np.random.default_rng(args.seed).choice(len(images), args.test_size, False))
        images, labels = images[index], labels[index]
    result = evaluate(model, images, labels)
    print(
        f"{args.model}: accuracy {result.accuracy:.4f} on {len(images):,} {dataset} test images "
        f"(loss {result.loss:.4f})"
    )
    print("per-class accuracy:")
    for name, acc in zip(data.classes, result.per_class_accuracy):
        print(f"  {name:>12}  {acc:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    width = max(4, len(str(result.confusion.max())) + 1)
    print("      " + "".join(f"{i:>{width}}" for i in range(len(result.confusion))))
    for i, row in enumerate(result.confusion):
        print(f"  {i:>3} " + "".join(f"{v:>{width}}" for v in row))
    if args.plot and plot_confusion(result.confusion, data.classes, args.plot) is None:
        print("note: --plot needs matplotlib (pip install 'faltung[plot]')", file=sys.stderr)
    if args.misclassified:
        write_mistakes_gallery(
            model, images, labels, data.classes, args.misclassified, args.gallery
        )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Classify files in chunks, so thousands of files never sit in memory at once."""
    model = load_model(args.model)
    meta = getattr(model, "metadata", {})
    shape = tuple(meta.get("input_shape", (1, 28, 28)))
    classes = meta.get("classes") or [str(i) for i in range(10)]
    failures = 0
    for start in range(0, len(args.files), args.batch_size):
        chunk = args.files[start : start + args.batch_size]
        images, names = [], []
        for name in chunk:
            try:
                images.append(load_image(name, shape[1:], args.resize, args.invert))
                names.append(name)
            except ImageError as error:
                failures += 1
                print(f"faltung: error: {error}", file=sys.stderr)
        if not images:
            continue
        probabilities = np.concatenate(
            [softmax(z) for z in model.iter_logits(np.stack(images), args.batch_size)]
        )
        for name, probs in zip(names, probabilities):
            best = np.argsort(probs)[::-1][: args.top]
            guesses = ", ".join(f"{classes[k]} ({probs[k]:.3f})" for k in best)
            print(f"{name}: {guesses}")
    if failures:
        print(
            f"faltung: {failures} of {len(args.files)} files could not be classified",
            file=sys.stderr,
        )
        return 2
    return 0


def run_summary(args: argparse.Namespace) -> int:
    preset = get_preset(args.preset)
    model = preset.build(0)
    print(f"preset {preset.name}: {preset.description}")
    print(model.summary((1, 28, 28)))
    flops = count_flops(model, (1, 28, 28))
    total, step = sum(flops.values()), training_step_flops(flops)
    print(
        f"forward FLOPs per image: {total / 1e6:.2f} M ("
        + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in flops.items())
        + f"); a training step costs {step / 1e6:.2f} M per image"
    )
    return 0
