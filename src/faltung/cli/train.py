"""``faltung train``: run a preset, write weights, metrics, history and plots."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, parallel
from .._atomic import atomic_write
from ..augment import parse_augment
from ..datasets import (
    DEFAULT_TEST_SPLIT,
    ImageArray,
    ImageDataset,
    Preprocessing,
    check_training_labels,
    fingerprint,
    is_own_data,
    load_data,
    load_dataset,
    stratified_split,
    subset_indices,
)
from ..distributed import world
from ..explain.plots import plot_layer_statistics
from ..io import (
    ModelMetadata,
    infer_input_shape,
    load_model,
    output_width,
    read_archive,
    save_model,
)
from ..losses import SoftmaxCrossEntropy
from ..model import Sequential
from ..netfile import check_shapes, read_network
from ..presets import get_preset
from ..train import EpochPrinter, HistoryWriter, ProgressBar, Trainer, evaluate
from ..train.insight import LayerStatistics
from ..train.trainer import CHECKPOINT_FORMAT
from ..viz import plot_confusion, plot_history
from ._text import plural
from .errors import UsageError
from .settings import (
    check_unused_flags,
    describe_training,
    make_optimizer,
    make_schedule,
    preset_augment,
    preset_name,
    resolve_settings,
    saved_run,
)

RESULT_FILES = ("model.npz", "checkpoint.npz", "metrics.json")


def check_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an earlier run, and find out now if OUT cannot be written.

    Creates nothing: a run that fails on its inputs leaves no empty directory behind.
    """
    if resume:
        if not (out / "checkpoint.npz").is_file():
            raise UsageError(f"--resume: no checkpoint at {out / 'checkpoint.npz'}")
    elif not overwrite:
        existing = [name for name in RESULT_FILES if (out / name).exists()]
        if existing:
            raise UsageError(
                f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue "
                f"it, --overwrite to replace it, or --out DIR to write elsewhere"
            )
    base = out.absolute()
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"output directory {out} is not writable ({base} is not a directory)")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {out} is not writable (permission denied on {base})")
    free = shutil.disk_usage(base).free
    if free < 64 * 2**20:
        raise UsageError(f"only {free / 2**20:.1f} MiB free in {base}; need at least 64 MiB")


def create_output(out: Path) -> None:
    """Create OUT and prove it writable; on failure remove the directories made here."""
    missing = []
    parent = out.absolute()
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as error:
        for directory in missing:  # deepest first; all are empty
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise UsageError(
            f"output directory {out} is not writable ({error.strerror or error})"
        ) from None


def count(n: int, total: int, split: str) -> str:
    return f"all {total:,} {split} images" if n == total else f"{n:,} of {total:,} {split} images"


def take(images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``images[index]``, without copying when the index is all of them in order (a large
    uint8 set is then held once)."""
    if len(index) == len(images) and np.array_equal(index, np.arange(len(images))):
        return images
    return images[index]


def default_out(args: argparse.Namespace, preset: str) -> str:
    """The run's folder under runs/: named after one's own data, else the --model file,
    else the preset, so that runs of different data do not meet in runs/lenet."""
    if is_own_data(args.data):
        path = Path(args.data).resolve()
        return path.name if path.is_dir() else path.stem
    return Path(args.model).stem if args.model else preset


def load_training_data(args: argparse.Namespace, settings: dict[str, Any]) -> ImageDataset:
    """The user's own images (--data FOLDER|FILE.csv|FILE.npz), else an IDX dataset; uint8."""
    if is_own_data(args.data):
        size = settings.get("image_size")
        data = load_data(
            args.data,
            settings.get("channels"),
            tuple(size) if size else None,
            settings["val_split"] or None,
            settings["seed"],
        )
        check_training_labels(data)
        return data
    return load_dataset(settings["dataset"], args.data, normalize=False)


def build_network(
    args: argparse.Namespace, preset, settings: dict[str, Any], input_shape, classes: int
) -> tuple[Sequential, Preprocessing | None, str]:
    """The network to train, the preprocessing it comes with (a trained model's), and its
    description. Every mismatch with the data is an error naming the file and layer."""
    seed = settings["seed"]
    if not args.model:
        model = preset.build(seed, input_shape, classes)
        return model, None, f"preset {preset.name} ({preset.description})"
    path = Path(args.model)
    if path.suffix.lower() == ".npz":
        if args.normalize is not None:
            raise UsageError(f"--normalize: {path} keeps the standardisation it was trained with")
        model, meta = load_model(path)
        if tuple(meta.input_shape) != tuple(input_shape):
            raise UsageError(
                f"{path}: the model takes {'x'.join(map(str, meta.input_shape))} images, the "
                f"data has {'x'.join(map(str, input_shape))}"
            )
        prep = Preprocessing.from_json(meta.preprocessing, input_shape[0])
        what = f"{path} (fine-tuning its trained weights; settings of preset {preset.name})"
        # The weights stay; the layers' own generators (dropout's) start from the seed, so
        # that the same --seed fine-tunes to the same weights.
        for position, (_, layer) in enumerate(model.named_layers()):
            if hasattr(layer, "rng"):
                layer.rng = np.random.default_rng([seed, position])
        model.train()
        return model, prep, what
    model, declared = read_network(path)
    if declared is not None and tuple(declared) != tuple(input_shape):
        raise UsageError(
            f"{path}: input_shape {list(declared)} does not match the data "
            f"({'x'.join(map(str, input_shape))})"
        )
    check_shapes(model, tuple(input_shape), path)
    model.initialize(seed)
    return model, None, f"{path} ({plural(len(model), 'layer')}; settings of preset {preset.name})"


def run_train(args: argparse.Namespace) -> int:
    preset = get_preset(preset_name(args))
    out = Path(args.out or os.path.join("runs", default_out(args, preset.name)))
    checkpoint = out / "checkpoint.npz"
    # Under mpiexec every rank checks its inputs; a failure anywhere is one error everywhere.
    comm = world()
    if not comm.is_root:  # rank 0 speaks for all; the others still report errors on stderr
        sys.stdout = open(os.devnull, "w")
    run = comm.on_root(saved_run, checkpoint, preset.name, args.model) if args.resume else None
    saved, saved_data = run if run is not None else (None, None)
    with comm.together():
        settings = resolve_settings(args, saved)
        check_unused_flags(args, settings)
        # Every input is checked before OUT is created.
        if comm.is_root:  # rank 0 alone reads and writes OUT
            check_output(out, args.resume, args.overwrite)
        if args.model and Path(args.model).is_dir():
            raise UsageError(f"--model {args.model} is a folder; give the network or model file")
        if args.model and not Path(args.model).is_file():
            raise UsageError(f"--model {args.model}: no such file")
        data = load_training_data(args, settings)
        if data.held_out and args.val_split == 0:
            raise UsageError(
                f"--val-split 0: {data.name} has no test split of its own, so a fraction of "
                f"it is held out to test on (default {DEFAULT_TEST_SPLIT})"
            )
        n_train, n_test = len(data.train_images), len(data.test_images)
        for flag, size, split, total in (
            ("--train-size", "train_size", "training", n_train),
            ("--test-size", "test_size", "test", n_test),
        ):
            if settings[size] is not None and settings[size] > total:
                if saved is not None:  # the checkpoint's number: other data than its run's
                    raise UsageError(
                        f"--resume: the run in {out} drew {settings[size]:,} {split} images, "
                        f"and {data.name} has {total:,}: not the images it trained on"
                    )
                if getattr(args, size) is None:  # the preset's number, not the user's
                    own = is_own_data(args.data)
                    other = " (or --preset lenet, which takes all)" if own else ""
                    raise UsageError(
                        f"preset {preset.name} draws {settings[size]:,} {split} images, and "
                        f"{data.name} has {total:,}: pass {flag} N{other}"
                    )
                raise UsageError(f"{flag} {settings[size]} exceeds the {total} images available")
        train_index = subset_indices(n_train, settings["train_size"], settings["seed"])
        test_index = subset_indices(n_test, settings["test_size"], settings["seed"])
        train_x, train_y = take(data.train_images, train_index), data.train_labels[train_index]
        test_x, test_y = take(data.test_images, test_index), data.test_labels[test_index]
        test_digest = fingerprint(test_x, test_y)  # evaluate checks it finds these again
        val_data = None
        if settings["val_split"] and not data.held_out:
            # Stratified, as the test split of data without one: every class keeps images
            # to train on, and the held-out images depend on the seed alone.
            held = stratified_split(train_y, settings["val_split"], settings["seed"])
            if not 0 < held.sum() < len(train_x):
                raise UsageError(
                    f"--val-split {settings['val_split']} leaves no validation or training images"
                )
            val_data = (train_x[held], train_y[held])
            train_x, train_y = train_x[~held], train_y[~held]
        data_digest = fingerprint(train_x, train_y, test_x, test_y, *(val_data or ()))
        if saved_data is not None and saved_data != data_digest:
            older = " (or faltung drew --val-split's images otherwise when it began)"
            raise UsageError(
                f"--resume: {data.name} does not hold the images the run in {out} trained on"
                f"{older if val_data else ''}: give that run's --data, unchanged (no file "
                "added, removed or relabelled)"
            )

        kernels = settings["kernels"]
        input_shape = tuple(int(n) for n in train_x.shape[1:])
        model, preprocessing, network = build_network(
            args, preset, settings, input_shape, len(data.classes)
        )
        if saved is not None and args.model:  # resume: the checkpoint's architecture rules
            model = Sequential.from_config(
                read_archive(checkpoint, CHECKPOINT_FORMAT)[0]["architecture"]
            )
        model.use_kernels(kernels)
        if output_width(model, input_shape) != len(data.classes):
            raise UsageError(
                f"{network.split(' (')[0]} takes {'x'.join(map(str, infer_input_shape(model)))} "
                f"images and {output_width(model, infer_input_shape(model))} classes; "
                f"{data.name} has {'x'.join(map(str, input_shape))} images and "
                f"{len(data.classes)} classes"
            )
        if preprocessing is None:
            fit = settings["normalize"]
            preprocessing = (
                Preprocessing.fit(train_x) if fit else Preprocessing.identity(input_shape[0])
            )
        digits = data.name == "mnist"
        try:
            augment = parse_augment(preset_augment(settings.get("augment"), args, digits), digits)
        except ValueError as error:
            raise UsageError(f"--augment: {error}") from None
    comm.check_same(
        {
            "settings": settings,
            "data": data_digest,
            "model": model.config(),
            "weights": fingerprint(*model.state_dict().values()),
        }
    )
    train_x, test_x = ImageArray(train_x, preprocessing), ImageArray(test_x, preprocessing)
    if val_data is not None:
        val_data = (ImageArray(val_data[0], preprocessing), val_data[1])
    history_writer = HistoryWriter(out)
    loss = SoftmaxCrossEntropy(settings.get("label_smoothing", 0.0), kernels=kernels)
    with comm.together():
        trainer = Trainer(
            model, loss, make_optimizer(model, settings),
            (train_x, train_y),
            epochs=settings["epochs"], batch_size=settings["batch_size"],
            schedule=make_schedule(settings), test_data=(test_x, test_y), val_data=val_data,
            callbacks=(
                [ProgressBar(), EpochPrinter(), LayerStatistics(), history_writer]
                if comm.is_root
                else []
            ),
            seed=settings["seed"], checkpoint_path=checkpoint, augment=augment,
            config={"preset": preset.name, "settings": settings, "data": data_digest,
                    **({"model": str(args.model)} if args.model else {})},
            comm=comm,
        )  # fmt: skip
        if comm.is_root:
            create_output(out)
    subsets = len(train_index) < n_train or len(test_index) < n_test or val_data is not None
    print(f"faltung {__version__}: {network}")
    print(f"training: {describe_training(settings)}")
    if augment is not None:
        print(f"augmentation: {augment.describe()}")
    print(
        f"data: {data.name}, {count(len(train_x), n_train, 'training')}, "
        f"{count(len(test_x), n_test, 'test')}"
        + (f", {len(val_data[0]):,} held out for validation" if val_data else "")
        + (f" (drawn with seed {settings['seed']})" if subsets else "")
        + f"; model: {model.num_parameters():,} parameters; output: {out}"
    )
    if model.ends_in_softmax:
        print(
            "the network ends in Softmax: training takes cross-entropy on the scores "
            "before it (the same loss, computed stably)"
        )
    if comm.size > 1:
        print(f"data-parallel: {comm.describe(settings['batch_size'])}")
    batch = math.ceil(settings["batch_size"] / comm.size)  # the first process's share
    model.train()
    if (shards := model.shard_count(batch)) > 1:
        print(f"threads: {shards} share each batch of {batch} (FALTUNG_NUM_THREADS=1: whole)")
    if args.resume:
        saved = trainer.load_checkpoint(checkpoint).get("threads")
        print(f"resuming at epoch {trainer.epoch + 1}, step {trainer.step}")
        now, splits = parallel.get_num_threads(), batch >= 2 * parallel.MIN_SHARD
        if saved is not None and saved != now and splits:
            print(
                f"note: the checkpoint's run split its batches over {saved} threads, this one "
                f"over {now}: dropout's masks and the rounding differ from an unbroken run"
            )
    started = time.perf_counter()
    history = trainer.fit()
    elapsed = time.perf_counter() - started

    classes = len(data.classes)
    subset = evaluate(model, test_x, test_y, num_classes=classes, comm=comm)
    all_test = ImageArray(data.test_images, preprocessing)
    full = evaluate(model, all_test, data.test_labels, num_classes=classes, comm=comm)
    if not comm.is_root:  # rank 0 alone writes the results
        return 0
    metadata = ModelMetadata(
        input_shape=input_shape,
        classes=tuple(data.classes),
        dataset=data.name,
        preset=preset.name,
        settings=settings,
        test_indices=tuple(test_index.tolist()),
        preprocessing=preprocessing.to_json(),
        test_digest=test_digest,
    )
    written = [save_model(model, out / "model.npz", metadata), checkpoint, *history_writer.paths]
    metrics = {
        "faltung_version": __version__,
        "preset": preset.name,
        "settings": settings,
        "epochs": len(history),
        "final_loss": history.last["loss"],
        "train_accuracy": history.last["train_acc"],
        "test_accuracy": subset.accuracy,
        "test_images": len(test_x),
        "full_test_accuracy": full.accuracy,
        "full_test_images": n_test,
        "per_class_accuracy": dict(zip(data.classes, full.per_class_accuracy.round(4).tolist())),
        "confusion_matrix": full.confusion.tolist(),
        "train_seconds": round(sum(history.column("seconds")), 2),
        "wall_seconds_this_call": round(elapsed, 2),
    }
    with atomic_write(out / "metrics.json") as handle:
        handle.write(json.dumps(metrics, indent=1).encode())
    written.append(out / "metrics.json")
    if not args.no_plots:
        counts = {"test": len(test_x), "validation": len(val_data[0]) if val_data else None}
        plots = plot_history(history, out, counts)
        confusion = plot_confusion(full.confusion, data.classes, out / "confusion.png")
        if confusion is None:
            print(
                "note: install matplotlib (pip install 'faltung[plot]') for the plots",
                file=sys.stderr,
            )
        else:
            written += [*plots, confusion]
            layers = plot_layer_statistics(history, out / "layers.png")
            if layers:
                written.append(out / "layers.png")
    print(
        f"final loss {history.last['loss']:.4f}; accuracy {subset.accuracy:.4f} on the "
        f"{len(test_x):,} test images of this run, {full.accuracy:.4f} on all "
        f"{n_test:,}; {metrics['train_seconds']:.0f}s of training"
    )
    print(f"wrote {len(written)} files to {out}: {', '.join(p.name for p in written)}")
    return 0
