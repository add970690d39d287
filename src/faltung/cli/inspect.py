"""``faltung evaluate``, ``predict`` and ``summary``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import (
    DATASETS,
    DatasetError,
    ImageArray,
    ImageDataset,
    Preprocessing,
    fingerprint,
    is_own_data,
    load_data,
    load_dataset,
    subset_indices,
)
from ..images import EXTENSIONS, ImageError, load_image
from ..io import ModelMetadata, infer_input_shape, load_model
from ..presets import get_preset
from ..summary import count_flops, training_step_flops
from ..train import evaluate
from ..viz import picture_format, plot_confusion
from ._model import choose_inversion
from ._text import plural
from .errors import UsageError
from .explain import write_mistakes_gallery


def choose_test_images(
    args: argparse.Namespace,
    meta: ModelMetadata,
    dataset: str,
    n_test: int,
    whole: str | None = None,
) -> tuple[np.ndarray, str, bool]:
    """Which test images to score, how to say so, and whether they are the recorded ones.

    By default the ones the model was tested on in training (recorded in the model file);
    ``--test-size N`` draws N with the seed exactly as ``faltung train`` does; ``--all``.
    ``whole`` names the images of one's own data that are all to be scored (``--test-size``
    still draws from them), rather than a test split of a known dataset.
    """
    if whole is not None and args.test_size is None:
        counted = f"all {n_test:,} {whole}" if n_test != 1 else f"the one {whole[:-1]}"
        return np.arange(n_test), f"{counted} of {dataset}", False
    if args.all:
        return np.arange(n_test), f"all {n_test:,} {dataset} test images", False
    if args.test_size is not None:
        if args.test_size > n_test:
            raise UsageError(f"--test-size {args.test_size} exceeds the {n_test} test images")
        seed = args.seed if args.seed is not None else int(meta.settings.get("seed", 0))
        index = subset_indices(n_test, args.test_size, seed)
        noun = f"{whole} of {dataset}" if whole else f"{dataset} test images"
        return index, f"{len(index):,} {noun} drawn with seed {seed}", False
    if meta.test_indices is not None and dataset == meta.dataset:
        index = np.asarray(meta.test_indices, dtype=np.int64)
        if index.size == 0 or index.min() < 0 or index.max() >= n_test:
            raise UsageError(
                f"{args.model}: the recorded test images do not fit the {n_test} test images of "
                f"this {dataset} copy; pass --all or --test-size N"
            )
        if index.size == n_test:
            return index, f"all {n_test:,} {dataset} test images, as in training", True
        return (
            index,
            (
                f"the {index.size:,} {dataset} test images this model was tested on in training "
                f"(recorded in the model file)"
            ),
            True,
        )
    return np.arange(n_test), f"all {n_test:,} {dataset} test images", False


def run_evaluate(args: argparse.Namespace) -> int:
    if args.seed is not None and args.test_size is None:
        raise UsageError("--seed chooses the images of a --test-size draw; give --test-size too")
    if args.gallery and not args.misclassified:
        raise UsageError("--gallery names the picture of --misclassified N; give that too")
    for picture in (args.plot, args.gallery):
        with contextlib.suppress(ImportError):  # without matplotlib a note says so later
            if picture:
                picture_format(picture)
    model, meta = load_model(args.model)
    own = is_own_data(args.data)
    whole = trained_on = False
    if own:
        data, trained_on, same_name = own_data_as_in_training(args.data, meta)
        # Labelled images other than the training data, or --all: every image of them
        # counts, and none is held out first.
        whole = args.all or not (trained_on or same_name)
    else:
        dataset = args.dataset or meta.dataset or "mnist"
        if args.dataset is None and dataset not in DATASETS:
            raise UsageError(
                f"{args.model} was trained on your own images ({dataset!r}); "
                f"pass them with --data PATH"
            )
        data = load_dataset(dataset, args.data, normalize=False)
    preprocessing = Preprocessing.from_json(meta.preprocessing, meta.input_shape[0])
    pool_x, pool_y = data.test_images, data.test_labels
    if whole:
        noun = "test images"  # of data with a test split of its own
        if data.held_out or len(pool_x) == 0:  # else all of it: the held-out split undone
            pool_x = np.concatenate([data.train_images, data.test_images])
            pool_y = np.concatenate([data.train_labels, data.test_labels])
            noun = "images"
        index, what, as_recorded = choose_test_images(args, meta, data.name, len(pool_x), noun)
        if trained_on and noun == "images":
            what += " (its training images included)"
    else:
        index, what, as_recorded = choose_test_images(args, meta, data.name, len(pool_x))
    if as_recorded and test_images_changed(meta, data, index):
        print(
            f"faltung: warning: these are not the images {args.model} was tested on in "
            f"training: {data.name} has changed since (files added, removed or relabelled), "
            "and a held-out split drawn again may hold training images",
            file=sys.stderr,
        )
        what = f"{len(index):,} {data.name} test images, drawn again from the changed data"
    images = ImageArray(pool_x[index], preprocessing)
    classes, labels = in_model_classes(meta.classes, data, pool_y[index])
    result = evaluate(model, images, labels, num_classes=len(classes))
    print(f"{args.model}: accuracy {result.accuracy:.4f} (loss {result.loss:.4f}) on {what}")
    print("per-class accuracy:")
    counts = result.confusion.sum(axis=1)
    for name, acc, count in zip(classes, result.per_class_accuracy, counts):
        print(f"  {name:>12}  {acc:.4f}" if count else f"  {name:>12}  (no images)")
    print("confusion matrix (rows: true class, columns: predicted):")
    width = max(4, len(str(result.confusion.max())) + 1)
    print("      " + "".join(f"{i:>{width}}" for i in range(len(result.confusion))))
    for i, row in enumerate(result.confusion):
        name = "" if str(classes[i]) == str(i) else f"  {classes[i]}"  # digits name themselves
        print(f"  {i:>3} " + "".join(f"{v:>{width}}" for v in row) + name)
    if args.plot:
        written = plot_confusion(result.confusion, classes, args.plot)
        if written is None:
            print("note: --plot needs matplotlib (pip install 'faltung[plot]')", file=sys.stderr)
        else:
            print(f"wrote {written}: the confusion matrix as a picture")
    if args.misclassified:
        write_mistakes_gallery(
            model, images, labels, classes=classes, count=args.misclassified,
            path=args.gallery or "misclassified.png", pixels=pool_x[index],
            numbers=index,
        )  # fmt: skip
    return 0


def own_data_as_in_training(path: str, meta: ModelMetadata) -> tuple[ImageDataset, bool, bool]:
    """One's own images split as training split them; whether they are the data the model
    was trained on (its recorded test images found again; in files that record none, the
    same name); and whether they bear its name (the training data, perhaps changed since).
    Data too small to hold a split out of is other data, loaded without one."""
    try:
        data = split_as_in_training(path, meta.input_shape, meta.settings)
    except DatasetError:
        return split_as_in_training(path, meta.input_shape, meta.settings, False), False, False
    same_name = data.name == meta.dataset
    recorded = meta.test_indices
    if meta.test_digest is None or not recorded or max(recorded) >= len(data.test_images):
        return data, same_name and meta.test_digest is None, same_name
    index = np.asarray(recorded, np.int64)
    found = fingerprint(data.test_images[index], data.test_labels[index]) == meta.test_digest
    return data, found, same_name


def split_as_in_training(
    path: str, input_shape: tuple[int, ...], settings: dict[str, Any], hold_out: bool = True
) -> ImageDataset:
    """One's own images at the model's shape, split as training split them: the same seed
    and held-out fraction draw the same test images (``hold_out=False``: none drawn)."""
    return load_data(
        path,
        input_shape[0],
        tuple(input_shape[1:]),
        settings.get("val_split") or None,
        int(settings.get("seed", 0)),
        hold_out=hold_out,
    )


def test_images_changed(meta: ModelMetadata, data: ImageDataset, index: np.ndarray) -> bool:
    """Whether the recorded test images are no longer those the model was tested on in
    training (their digest differs: a folder changed since); older files cannot tell."""
    if meta.test_digest is None:
        return False
    return fingerprint(data.test_images[index], data.test_labels[index]) != meta.test_digest


def in_model_classes(
    model_classes: tuple[str, ...], data: ImageDataset, labels: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """(class names, labels as the model's class numbers): the data's classes are matched
    to the model's by name, so a folder may hold some of them, in any order. Labels of data
    without names (a CSV's, an npz's), or whose names share nothing with the model's, are
    the model's class numbers."""
    position = {name: k for k, name in enumerate(model_classes)}
    if not data.named or not any(name in position for name in data.classes):
        if len(data.classes) > len(model_classes):
            raise UsageError(
                f"{data.name} has {len(data.classes)} classes, the model {len(model_classes)}"
            )
        if data.named:
            print(
                f"note: the class names of {data.name} are not the model's; matched by position",
                file=sys.stderr,
            )
        return list(model_classes), labels
    unknown = [name for name in data.classes if name not in position]
    if unknown:
        raise UsageError(
            f"{data.name}: class {unknown[0]!r} is not one the model knows "
            f"({', '.join(model_classes)})"
        )
    mapping = np.array([position[name] for name in data.classes], np.int64)
    return list(model_classes), mapping[labels]


def run_predict(args: argparse.Namespace) -> int:
    """Classify files in chunks, so thousands of files never sit in memory at once."""
    model, meta = load_model(args.model)
    shape, classes = meta.input_shape, meta.classes
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise UsageError(
            f"{args.model}: predict reads grey or RGB images, and this model takes inputs of "
            f"shape {shape}"
        )
    preprocessing = Preprocessing.from_json(meta.preprocessing, shape[0])
    # A folder's .npy arrays are grey images too; an RGB model reads image files only.
    files = expand_folders(args.files, EXTENSIONS + ((".npy",) if shape[0] == 1 else ()))
    # A model trained with --image-size saw every image resized: predict does the same.
    resize = args.resize or bool(meta.settings.get("image_size"))
    failures = 0
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        # Each file's line in the files' order: an error waits for the results before it.
        errors: dict[str, str] = {}  # file -> why it could not be read
        images, notes = [], []
        for name in chunk:
            try:
                image = load_image(name, shape[1:], resize, channels=shape[0])
            except ImageError as error:
                errors[name] = str(error)
                failures += 1
                continue
            invert, auto = choose_inversion(args.invert, image, meta.dataset)
            images.append(1 - image if invert else image)
            if auto:
                notes.append("  [inverted: dark digit on a light background]")
            else:
                notes.append("  [inverted]" if invert else "")
        results: Iterator[tuple[np.ndarray, str]] = iter(())  # the read files', in order
        if images:
            inputs = preprocessing(np.stack(images))
            results = zip(model.predict_proba(inputs, args.batch_size), notes)
        for name in chunk:
            if name in errors:
                sys.stdout.flush()
                print(f"faltung: error: {errors[name]}", file=sys.stderr, flush=True)
                continue
            probs, note = next(results)
            best = np.argsort(probs)[::-1][: args.top]
            guesses = ", ".join(
                f"{classes[k] if k < len(classes) else k} ({probs[k]:.3f})" for k in best
            )
            print(f"{name}: {guesses}{note}")
    if failures:
        sys.stdout.flush()  # every prediction before the count, also into a pipe
        print(
            f"faltung: {failures} of {plural(len(files), 'file')} could not be classified",
            file=sys.stderr,
        )
        return 2
    return 0


def expand_folders(names: list[str], extensions: tuple[str, ...] = EXTENSIONS) -> list[str]:
    """Each folder becomes the files with one of ``extensions`` in it and in the folders
    inside it (a tree of class folders too), sorted, hidden ones left out; files stay as
    given, and so does a folder without any, which is then reported like any file that
    cannot be read."""
    files: list[str] = []
    for name in names:
        path = Path(name)
        found = []
        if path.is_dir():
            found = sorted(
                str(p)
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in extensions
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        files += found or [name]
    return files


def run_summary(args: argparse.Namespace) -> int:
    network = getattr(args, "network", None)
    if network is not None and Path(network).suffix.lower() == ".npz":
        # A trained model file given as --model, as `faltung train --model` accepts it.
        if args.model is not None:
            raise UsageError("give either MODEL.npz or --model NET.toml, not both")
        args.model, args.network = network, None
    if getattr(args, "network", None) is not None:
        from ..netfile import check_shapes, read_network

        if args.model is not None:
            raise UsageError("give either MODEL.npz or --model NET.toml, not both")
        model, declared = read_network(args.network)
        shape = args.input_shape or declared or (1, 28, 28)
        check_shapes(model, tuple(shape), args.network)
        print(f"{args.network}: {plural(len(model), 'layer')}")
    elif args.model is not None:
        model, meta = load_model(args.model)
        shape = meta.input_shape
        if args.input_shape is not None and tuple(args.input_shape) != tuple(shape):
            raise UsageError(
                f"--input-shape: {args.model} takes {'x'.join(map(str, shape))} images"
            )
        print(f"{args.model}: preset {meta.preset or 'none recorded'}")
    else:
        preset = get_preset(args.preset)
        if args.input_shape is not None:
            model = preset.build(0, tuple(args.input_shape))
            shape = tuple(args.input_shape)
        else:
            model = preset.build(0)
            shape = infer_input_shape(model)
        print(f"preset {preset.name}: {preset.description}")
    print(model.summary(shape))
    flops = count_flops(model, shape)
    total, step = sum(flops.values()), training_step_flops(flops)
    print(
        f"forward FLOPs per image: {total / 1e6:.2f} M ("
        + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in flops.items())
        + f"); a training step costs {step / 1e6:.2f} M per image"
    )
    return 0
