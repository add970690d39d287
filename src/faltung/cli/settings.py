"""The settings of a training run: the preset's defaults, the flags given, or a
checkpoint's on --resume; and the optimiser and learning-rate schedule they make."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from ..datasets import is_own_data
from ..io import read_archive
from ..optim import OPTIMIZERS, Optimizer
from ..presets import get_preset
from ..schedules import SCHEDULES, Schedule
from ..train.trainer import CHECKPOINT_FORMAT
from ._text import plural
from .errors import UsageError

SETTING_KEYS = (
    "dataset", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
    "schedule", "lr_step", "lr_gamma", "warmup", "train_size", "test_size", "val_split", "seed",
    "kernels", "channels", "image_size", "normalize", "augment", "label_smoothing",
)  # fmt: skip


def preset_name(args: argparse.Namespace) -> str:
    """--preset, else 'lenet' for a --model network or one's own images (all of them, at
    batch 64: the article's 10,000 and 100 MNIST images fit no other data), else 'article'."""
    if args.preset:
        return args.preset
    own_data = is_own_data(getattr(args, "data", None))
    return "lenet" if getattr(args, "model", None) or own_data else "article"


def resolve_settings(args: argparse.Namespace, saved: dict[str, Any] | None) -> dict[str, Any]:
    """Preset defaults, overridden by the flags given; on --resume the saved settings rule."""
    preset = get_preset(preset_name(args))
    given = {k: getattr(args, k) for k in SETTING_KEYS if getattr(args, k, None) is not None}
    if isinstance(given.get("normalize"), str):
        given["normalize"] = given["normalize"] == "yes"
    if saved is None:
        defaults = {
            "dataset": "mnist", "val_split": 0.0, "seed": 0, "nesterov": False, "kernels": "fast",
            "normalize": True, "label_smoothing": 0.0,
        }  # fmt: skip
        # A network of one's own takes the preset's training settings, not its pixel scaling.
        chosen = {k: v for k, v in preset.defaults.items() if k != "normalize" or not args.model}
        return {**defaults, **chosen, **given}
    # Checkpoints from before --nesterov existed used Nesterov whenever momentum > 0, those
    # from before --kernels ran on the fast kernels, and those before --normalize or
    # --label-smoothing did neither.
    saved = {
        "nesterov": saved.get("momentum", 0) > 0, "kernels": "fast", "normalize": False,
        "label_smoothing": 0.0, **saved,
    }  # fmt: skip
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


def constructor_arguments(cls: type, available: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``available`` that ``cls``'s constructor names."""
    accepted = inspect.signature(cls).parameters
    return {k: v for k, v in available.items() if k in accepted}


def make_optimizer(model, settings: dict[str, Any]) -> Optimizer:
    cls = OPTIMIZERS[settings["optimizer"]]
    available = {
        "lr": settings["lr"],
        "weight_decay": settings["weight_decay"],
        "momentum": settings["momentum"],
        "nesterov": settings.get("nesterov", False),
    }
    return cls(model.parameters(), **constructor_arguments(cls, available))


def check_unused_flags(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """A flag the chosen optimiser or schedule has no use for is an error, not silently
    ignored."""
    accepted = inspect.signature(OPTIMIZERS[settings["optimizer"]]).parameters
    for flag, key in (("--momentum", "momentum"), ("--nesterov", "nesterov")):
        if getattr(args, key, None) is not None and key not in accepted:
            raise UsageError(f"{flag} does not apply to --optimizer {settings['optimizer']}")
    if settings.get("nesterov") and not settings["momentum"] > 0:
        raise UsageError("--nesterov needs a positive --momentum")
    schedule = inspect.signature(SCHEDULES[settings["schedule"]]).parameters
    for key, parameter in SCHEDULE_FLAGS.items():
        if getattr(args, key, None) is not None and parameter not in schedule:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} does not apply to --schedule {settings['schedule']}")


# The schedule flags' settings, and the constructor argument each one becomes.
SCHEDULE_FLAGS = {"lr_step": "step_size", "lr_gamma": "gamma"}


def make_schedule(settings: dict[str, Any]) -> Schedule:
    cls = SCHEDULES[settings["schedule"]]
    lr = settings["lr"]
    available = {
        "base_lr": lr,
        **{parameter: settings[key] for key, parameter in SCHEDULE_FLAGS.items()},
        "total_epochs": settings["epochs"],
        "min_lr": lr * 0.01,
        "warmup_epochs": settings["warmup"],
    }
    return cls(**constructor_arguments(cls, available))


def preset_augment(text: str | None, args: argparse.Namespace, digits: bool) -> str | None:
    """A preset's augmentation without flips for digits (a mirrored digit is another glyph,
    or none); what ``--augment`` asks for is kept as it is."""
    if not digits or not text or args.augment is not None or text in ("auto", "none"):
        return text
    return ",".join(name for name in text.split(",") if name.strip() != "flip") or None


def describe_training(settings: dict[str, Any]) -> str:
    """The optimisation that will actually run, in words, from the resolved settings."""
    optimizer = f"{settings['optimizer']} lr {settings['lr']:g}"
    if settings["optimizer"] in ("sgd", "rmsprop") and settings["momentum"]:
        kind = "Nesterov momentum" if settings.get("nesterov") else "momentum"
        optimizer += f", {kind} {settings['momentum']:g}"
    if settings["weight_decay"]:
        kind = "decoupled" if settings["optimizer"] == "adamw" else "L2"
        optimizer += f", {kind} weight decay {settings['weight_decay']:g}"
    schedule = {
        "step": f"lr x{settings['lr_gamma']:g} every {plural(settings['lr_step'], 'epoch')}",
        "exponential": f"lr x{settings['lr_gamma']:g} every epoch",
        "cosine": f"cosine decay to lr x0.01 over {plural(settings['epochs'], 'epoch')}",
    }.get(settings["schedule"], f"{settings['schedule']} lr")
    if settings["warmup"]:
        schedule += f" after {plural(settings['warmup'], 'warm-up epoch')}"
    smoothing = settings.get("label_smoothing", 0.0)
    loss = f", label smoothing {smoothing:g}" if smoothing else ""
    return (
        f"{plural(settings['epochs'], 'epoch')} at batch {settings['batch_size']}, {optimizer}, "
        f"{schedule}{loss}, seed {settings['seed']}"
    )


def saved_run(
    checkpoint: Path, preset: str, model: str | None
) -> tuple[dict[str, Any], str | None] | None:
    """The settings of the run in ``checkpoint`` and the digest of the images it trained
    on (None for checkpoints older than it), or None if there is no checkpoint. The run
    must be of the same preset and the same ``--model`` file."""
    if not checkpoint.is_file():
        return None
    header, _ = read_archive(checkpoint, CHECKPOINT_FORMAT)
    config = header.get("config", {})
    saved, network = config.get("preset"), config.get("model")
    again = f"--preset {saved}" + (f" --model {network}" if network else "")
    # A --model file is known by its name: the same file may be given by another path.
    if saved != preset or (Path(network).name if network else None) != (
        Path(model).name if model else None
    ):
        mine = (
            repr(preset)
            if not (model or network)
            else f"preset {preset!r}" + (f" and --model {model}" if model else " without --model")
        )
        theirs = f"preset {saved!r}" + (f" and --model {network}" if network else "")
        raise UsageError(
            f"{checkpoint} belongs to {theirs}, not {mine}: resume it with "
            f"{again} --out {checkpoint.parent} --resume"
        )
    return config["settings"], config.get("data")
