"""``faltung train``: run a preset, write weights, metrics, history and plots."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._atomic import atomic_write
from ..datasets import load_dataset
from ..explain.plots import plot_layer_statistics
from ..io import read_archive, save_model
from ..losses import SoftmaxCrossEntropy
from ..optim import OPTIMIZERS, SGD, Optimizer
from ..presets import get_preset
from ..schedules import Constant, CosineDecay, ExponentialDecay, Schedule, StepDecay
from ..train import Checkpointer, EpochPrinter, ProgressBar, Trainer, evaluate
from ..train.insight import LayerStatistics
from ..train.trainer import CHECKPOINT_FORMAT
from ..viz import plot_confusion, plot_history
from .errors import UsageError

SETTING_KEYS = (
    "dataset", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule",
    "lr_step", "lr_gamma", "warmup", "train_size", "test_size", "val_split", "seed",
)  # fmt: skip
RESULT_FILES = ("model.npz", "checkpoint.npz", "metrics.json")


def resolve_settings(args: argparse.Namespace, saved: dict[str, Any] | None) -> dict[str, Any]:
    """Preset defaults, overridden by the flags given; on --resume the saved settings rule."""
    preset = get_preset(args.preset)
    given = {k: getattr(args, k) for k in SETTING_KEYS if getattr(args, k, None) is not None}
    if saved is None:
        return {"dataset": "mnist", "val_split": 0.0, "seed": 0, **preset.defaults, **given}
    conflicts = [
        f"--{k.replace('_', '-')} {v} (checkpoint: {saved.get(k)})"
        for k, v in given.items()
        if k != "epochs" and saved.get(k) != v
    ]
    if conflicts:
        raise UsageError(
            f"--resume continues with the checkpoint's settings; these flags differ: "
            f"{', '.join(conflicts)}"
        )
    return {**saved, **({"epochs": given["epochs"]} if "epochs" in given else {})}


def prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an earlier run, and find out now if OUT cannot be written."""
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(
            f"output directory {out} is not writable ({error.strerror or error})"
        ) from None
    free = shutil.disk_usage(out).free
    if free < 64 * 2**20:
        raise UsageError(f"only {free / 2**20:.1f} MiB free in {out}; need at least 64 MiB")


def make_optimizer(model, settings: dict[str, Any]) -> Optimizer:
    name, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if name == "sgd":
        return SGD(
            model.parameters(),
            lr=lr,
            momentum=settings["momentum"],
            weight_decay=wd,
            nesterov=settings["momentum"] > 0,
        )
    if name == "rmsprop":
        return OPTIMIZERS[name](
            model.parameters(), lr=lr, momentum=settings["momentum"], weight_decay=wd
        )
    return OPTIMIZERS[name](model.parameters(), lr=lr, weight_decay=wd)


def make_schedule(settings: dict[str, Any]) -> Schedule:
    lr, warmup = settings["lr"], {"warmup_epochs": settings["warmup"]}
    kind = settings["schedule"]
    if kind == "step":
        return StepDecay(lr, settings["lr_step"], settings["lr_gamma"], **warmup)
    if kind == "exponential":
        return ExponentialDecay(lr, settings["lr_gamma"], **warmup)
    if kind == "cosine":
        return CosineDecay(lr, settings["epochs"], min_lr=lr * 0.01, **warmup)
    return Constant(lr, **warmup)


def draw(n_total: int, size: int | None, rng: np.random.Generator, what: str) -> np.ndarray:
    if size is None:
        return np.arange(n_total)
    if size > n_total:
        raise UsageError(f"{what} {size} exceeds the {n_total} images available")
    return np.sort(rng.choice(n_total, size, replace=False))


def run_train(args: argparse.Namespace) -> int:
    preset = get_preset(args.preset)
    out = Path(args.out or os.path.join("runs", preset.name))
    checkpoint = out / "checkpoint.npz"
    saved = None
    if args.resume and checkpoint.is_file():
        header, _ = read_archive(checkpoint, CHECKPOINT_FORMAT)
        if header.get("config", {}).get("preset") != preset.name:
            raise UsageError(
                f"{checkpoint} belongs to preset {header.get('config', {}).get('preset')!r}, "
                f"not {preset.name!r}"
            )
        saved = header["config"]["settings"]
    settings = resolve_settings(args, saved)
    prepare_output(out, args.resume, args.overwrite)

    data = load_dataset(settings["dataset"], args.data)
    rng = np.random.default_rng(settings["seed"])
    train_index = draw(len(data.train_images), settings["train_size"], rng, "--train-size")
    test_index = draw(len(data.test_images), settings["test_size"], rng, "--test-size")
    train_x, train_y = data.train_images[train_index], data.train_labels[train_index]
    test_x, test_y = data.test_images[test_index], data.test_labels[test_index]
    val_data = None
    if settings["val_split"]:
        n_val = round(len(train_x) * settings["val_split"])
        if not 0 < n_val < len(train_x):
            raise UsageError(
                f"--val-split {settings['val_split']} leaves no validation or training images"
            )
        order = rng.permutation(len(train_x))
        val_data = (train_x[order[:n_val]], train_y[order[:n_val]])
        train_x, train_y = train_x[order[n_val:]], train_y[order[n_val:]]

    model = preset.build(settings["seed"])
    optimizer = make_optimizer(model, settings)
    trainer = Trainer(
        model, SoftmaxCrossEntropy(), optimizer, (train_x, train_y),
        epochs=settings["epochs"], batch_size=settings["batch_size"],
        schedule=make_schedule(settings), test_data=(test_x, test_y), val_data=val_data,
        callbacks=[ProgressBar(), EpochPrinter(), LayerStatistics(), Checkpointer(out)],
        seed=settings["seed"], checkpoint_path=checkpoint,
        config={"preset": preset.name, "settings": settings},
    )  # fmt: skip
    print(f"faltung {__version__}: preset {preset.name} ({preset.description})")
    print(
        f"data: {data.name}, {len(train_x):,} training / {len(test_x):,} test images"
        + (f" / {len(val_data[0]):,} validation" if val_data else "")
        + f"; model: {model.num_parameters():,} parameters; output: {out}"
    )
    if args.resume:
        trainer.load_checkpoint(checkpoint)
        print(f"resuming at epoch {trainer.epoch + 1}, step {trainer.step}")
    started = time.perf_counter()
    history = trainer.fit()
    elapsed = time.perf_counter() - started

    subset = evaluate(model, test_x, test_y)
    full = evaluate(model, data.test_images, data.test_labels)
    metadata = {
        "preset": preset.name,
        "dataset": data.name,
        "input_shape": [1, 28, 28],
        "classes": list(data.classes),
        "settings": settings,
    }
    save_model(model, out / "model.npz", metadata)
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
        "full_test_images": len(data.test_images),
        "per_class_accuracy": dict(zip(data.classes, full.per_class_accuracy.round(4).tolist())),
        "confusion_matrix": full.confusion.tolist(),
        "train_seconds": round(sum(history.column("seconds")), 2),
        "wall_seconds_this_call": round(elapsed, 2),
    }
    with atomic_write(out / "metrics.json") as handle:
        handle.write(json.dumps(metrics, indent=1).encode())
    plots = [] if args.no_plots else plot_history(history, out)
    if plots:
        plot_confusion(full.confusion, data.classes, out / "confusion.png")
        if plot_layer_statistics(history, out / "layers.png"):
            plots.append(out / "layers.png")
    elif not args.no_plots:
        print(
            "note: install matplotlib (pip install 'faltung[plot]') for loss.png", file=sys.stderr
        )
    print(
        f"final loss {history.last['loss']:.4f}; accuracy {subset.accuracy:.4f} on the "
        f"{len(test_x):,} test images of this run, {full.accuracy:.4f} on all "
        f"{len(data.test_images):,}; {metrics['train_seconds']:.0f}s of training"
    )
    print(
        f"wrote {out / 'model.npz'}, {out / 'metrics.json'}"
        + (f", {', '.join(p.name for p in plots)}, confusion.png" if plots else "")
    )
    return 0
