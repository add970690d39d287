"""The ``faltung`` command line: train, evaluate, predict, summary, export, import.

Every expected failure (bad flag values, missing or corrupt files, unwritable output)
ends with one line ``faltung: error: ...`` and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__, distributed
from ..datasets import DATASETS, DatasetError
from ..distributed import DistributedError
from ..io import ModelFileError
from ..memory import tune_malloc
from ..optim import OPTIMIZERS
from ..presets import PRESETS
from ..schedules import SCHEDULES
from ..train import TrainingDiverged, TrainingInterrupted
from .errors import UsageError
from .explain import add_explain_parsers, run_explain
from .inspect import run_evaluate, run_predict, run_summary
from .onnx import add_onnx_commands, run_export, run_import
from .serve import run_serve
from .train import run_train


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the command line's error convention: one line, exit status 2.

    argparse prints its usage block before an error; ``--help`` still prints it in full.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"faltung: error: {_one_line(message)} (see: {self.prog} --help)\n")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
    return value


def augment_names(text: str) -> str:
    if not text.strip(",").strip():
        raise argparse.ArgumentTypeError(f"{text!r} names no augmentation; say 'none' for none")
    return text


def epochs_between(text: str) -> int | float:
    """A number of epochs, whole (10) or not (0.5), of at least a thousandth of one; whole
    ones stay ints, as the presets write them."""
    value = positive_float(text)
    if value < 1e-3:
        raise argparse.ArgumentTypeError(f"must be at least 0.001 epochs, got {text}")
    return int(value) if value.is_integer() else value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be non-negative and finite, got {text}")
    return value


def image_size(text: str) -> list[int]:
    parts = text.lower().split("x")
    try:
        size = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be H or HxW, got {text!r}") from None
    if len(size) not in (1, 2) or min(size) < 1:
        raise argparse.ArgumentTypeError(f"must be H or HxW with positive sizes, got {text!r}")
    return size * 2 if len(size) == 1 else size


def input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be CxHxW, such as 1x28x28, got {text!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"must be CxHxW with positive sizes, got {text!r}")
    return shape


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="faltung", description="Convolutional networks in NumPy: train and use them on MNIST."
    )
    parser.add_argument("--version", action="version", version=f"faltung {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a preset network (see --preset)")
    train.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="experiment to run (default: article; with --model, lenet's training settings)",
    )
    train.add_argument(
        "--model",
        metavar="NET.toml|NET.json|MODEL.npz",
        help="train this network instead of the preset's: a description of the layers, or a "
        "trained model to fine-tune",
    )
    train.add_argument("--dataset", choices=list(DATASETS), help="default: mnist")
    train.add_argument(
        "--data",
        metavar="PATH",
        help="a directory with the IDX files of --dataset (default: $FALTUNG_DATA, else "
        "download), or your own images: a folder DIR/<class>/*.png (optionally DIR/train and "
        "DIR/test), an MNIST-style .csv, or an .npz with x and y",
    )
    train.add_argument(
        "--channels", type=int, choices=[1, 3], help="grey or RGB (default: what the files are)"
    )
    train.add_argument(
        "--image-size",
        type=image_size,
        metavar="H[xW]",
        help="resize a folder's images to this size; a CSV's rows are images of this size; an "
        ".npz's images must be this size",
    )
    train.add_argument(
        "--augment",
        nargs="?",
        const="auto",
        type=augment_names,
        metavar="T1,T2|auto|none",
        help="random transforms of each training batch: shift, flip, affine (small rotations "
        "and scaling), brightness, contrast; 'auto' (the default when the flag is given "
        "alone): shift plus affine for MNIST's digits, shift plus flip otherwise",
    )
    train.add_argument(
        "--normalize",
        choices=["yes", "no"],
        help="standardise each channel with the training split's mean and std (default: yes, "
        "except for the article and lenet presets, which train on pixels in [0, 1])",
    )
    train.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default: runs/ and the name of your data, of the --model "
        "file, or of the preset)",
    )
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--batch-size", type=positive_int)
    train.add_argument("--optimizer", choices=list(OPTIMIZERS))
    train.add_argument("--lr", type=positive_float, help="(base) learning rate")
    train.add_argument("--momentum", type=non_negative_float)
    train.add_argument(
        "--nesterov",
        action="store_true",
        default=None,
        help="Nesterov momentum (sgd; needs --momentum > 0); plain momentum by default",
    )
    train.add_argument("--weight-decay", type=non_negative_float, help="L2 lambda")
    train.add_argument(
        "--label-smoothing",
        type=fraction,
        help="target probability moved evenly to every class, as PyTorch's CrossEntropyLoss "
        "(default 0)",
    )
    train.add_argument("--schedule", choices=list(SCHEDULES))
    train.add_argument(
        "--lr-step", type=epochs_between, help="epochs between step decays (0.5: twice an epoch)"
    )
    train.add_argument("--lr-gamma", type=positive_float, help="decay factor")
    train.add_argument("--warmup", type=non_negative_float, help="warm-up epochs")
    train.add_argument(
        "--train-size", type=positive_int, help="training images drawn with the seed"
    )
    train.add_argument("--test-size", type=positive_int, help="test images drawn with the seed")
    train.add_argument(
        "--val-split",
        type=fraction,
        help="fraction of training images held out for validation; for your own data without "
        "a test split, the stratified fraction held out as the test split (default 0.2)",
    )
    train.add_argument(
        "--seed", type=non_negative_int, help="seed for weights, data draws and shuffling"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from OUT/checkpoint.npz with its settings"
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier run in OUT"
    )
    train.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    train.add_argument(
        "--kernels",
        choices=["fast", "reference"],
        help="'reference' computes with the article's plain kernels (same numbers, slower); "
        "default: fast",
    )

    evaluate = commands.add_parser("evaluate", help="accuracy and confusion matrix of a model")
    evaluate.add_argument("model", metavar="MODEL.npz")
    evaluate.add_argument("--dataset", choices=list(DATASETS))
    evaluate.add_argument("--data", metavar="DIR")
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument(
        "--test-size",
        type=positive_int,
        help="score N test images drawn with --seed, the same N that train --test-size N drew "
        "(default: the test images recorded in the model file)",
    )
    which.add_argument(
        "--all",
        action="store_true",
        help="score every test image (of your own data without a test split: every image)",
    )
    evaluate.add_argument(
        "--seed",
        type=non_negative_int,
        help="seed of the --test-size draw (default: the model's training seed, else 0)",
    )
    evaluate.add_argument("--plot", metavar="PNG", help="write the confusion matrix as a picture")
    evaluate.add_argument(
        "--misclassified",
        type=positive_int,
        metavar="N",
        help="draw the N most confident mistakes into a gallery (see --gallery)",
    )
    evaluate.add_argument(
        "--gallery",
        metavar="PNG",
        help="where --misclassified writes (default: misclassified.png)",
    )

    predict = commands.add_parser("predict", help="classify image files (PNG/JPEG/.npy)")
    predict.add_argument("model", metavar="MODEL.npz")
    predict.add_argument("files", nargs="+", metavar="FILE", help="image files, or folders of them")
    predict.add_argument("--resize", action="store_true", help="scale images to the model's size")
    predict.add_argument(
        "--invert",
        choices=["auto", "yes", "no"],
        default="auto",
        help="invert grey levels, for dark digits on a light background (default: auto, "
        "when the border is brighter than the centre and the model is of MNIST or "
        "Fashion-MNIST, whose images are light on black)",
    )
    predict.add_argument("--top", type=positive_int, default=1, help="show the K likeliest classes")
    predict.add_argument("--batch-size", type=positive_int, default=256)

    summary = commands.add_parser("summary", help="layers, shapes, parameters and FLOPs")
    summary.add_argument("model", nargs="?", metavar="MODEL.npz", help="a model file")
    summary.add_argument(
        "--model",
        dest="network",
        metavar="NET.toml|NET.json",
        help="a network description (as for train --model)",
    )
    summary.add_argument(
        "--input-shape",
        type=input_shape,
        metavar="CxHxW",
        help="the input shape: a preset is built for it; for --model, default the file's "
        "input_shape, else 1x28x28",
    )
    summary.add_argument(
        "--preset", default="article", choices=list(PRESETS), help="without MODEL.npz"
    )
    add_onnx_commands(commands)
    add_explain_parsers(commands, positive_int)
    return parser


def entry() -> int:
    """The ``faltung`` command: its process is its own, so malloc is tuned for it first
    (see ``faltung.memory``), and warnings print as one line each, as errors do.
    :func:`main` itself changes nothing process-wide."""
    tune_malloc()
    warnings.formatwarning = _warning_line
    return main()


def _warning_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"faltung: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse_arguments(parser, argv)
    except DistributedError as error:
        return _report(f"faltung: error: {_one_line(error)}", 2, every_rank=True)
    handlers = {
        "train": run_train,
        "evaluate": run_evaluate,
        "predict": run_predict,
        "summary": run_summary,
        "export": run_export,
        "import": run_import,
        "explain": run_explain,
        "serve": run_serve,
    }
    try:
        return handlers[args.command](args)
    except TrainingInterrupted as stop:
        return _report(f"faltung: {stop}", 130, every_rank=True)
    except (DistributedError, TrainingDiverged) as error:
        return _report(f"faltung: error: {_one_line(error)}", 2, every_rank=True)
    except BrokenPipeError:
        # The reader went away (``faltung ... | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UsageError, DatasetError, ModelFileError, ValueError, OSError) as error:
        return _report(f"faltung: error: {_one_line(error)}", 2, every_rank=False)
    except KeyboardInterrupt:
        return _report("faltung: interrupted", 130, every_rank=False)
    except MemoryError as error:  # NumPy's names the array that did not fit
        return _report(f"faltung: error: out of memory ({_one_line(error)})", 2, every_rank=False)
    except Exception:
        comm = distributed.created_world()
        if comm is None or comm.size == 1:
            raise
        traceback.print_exc()
        comm.abort(1)
        raise


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None):
    """``parser.parse_args``; under mpiexec, a flag refused on one rank stops every rank,
    since the others would wait for it forever (one error, printed by rank 0)."""
    if distributed.launched_size() == 1:
        return parser.parse_args(argv)
    comm = distributed.world()
    refused = io.StringIO()
    with contextlib.redirect_stderr(refused), comm.together():
        try:
            return parser.parse_args(argv)
        except SystemExit as stop:
            if not stop.code:
                raise
            raise UsageError(refused.getvalue().strip().removeprefix("faltung: error: ")) from None


def _report(message: str, code: int, every_rank: bool) -> int:
    """Print an expected failure and return its exit status.

    Under MPI, a failure that every rank raises together (the Trainer and the checks before
    training make sure of that) is printed once, by rank 0. A failure of one rank alone
    aborts the whole job, since the others would wait for it forever in a collective.
    """
    comm = distributed.created_world()
    if comm is None or comm.size == 1:
        if distributed.launched_rank() == 0:
            print(message, file=sys.stderr)
        return code
    if every_rank:
        if comm.is_root:
            print(message, file=sys.stderr)
        return code
    print(f"{message} (on rank {comm.rank} of {comm.size}; stopping every rank)", file=sys.stderr)
    sys.stderr.flush()
    comm.abort(code)
    return code


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
