"""``faltung export MODEL.npz model.onnx`` and ``faltung import model.onnx MODEL.npz``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..io import load_model, save_model
from ..onnx import OPSET, OnnxUnavailableError
from ..onnx import export as export_onnx
from ..onnx import load as load_onnx
from ._text import plural
from .errors import UsageError


def add_onnx_commands(commands: Any) -> None:
    export = commands.add_parser("export", help=f"write a model as ONNX (opset {OPSET})")
    export.add_argument("model", metavar="MODEL.npz")
    export.add_argument("output", metavar="MODEL.onnx")
    export.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="one example's shape (default: the one recorded with the model)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")

    imported = commands.add_parser("import", help="read an ONNX model into a faltung .npz")
    imported.add_argument("model", metavar="MODEL.onnx")
    imported.add_argument("output", metavar="MODEL.npz")
    imported.add_argument("--overwrite", action="store_true", help="replace an existing file")


def run_export(args: argparse.Namespace) -> int:
    _refuse_overwrite(Path(args.output), args.overwrite)
    model, metadata = load_model(args.model)
    shape = _parse_shape(args.input_shape) if args.input_shape else None
    try:
        path = export_onnx(model, args.output, input_shape=shape, metadata=metadata.to_json())
    except OnnxUnavailableError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {path}: {plural(len(model), 'layer')} as ONNX opset {OPSET}, dynamic batch size")
    return 0


def run_import(args: argparse.Namespace) -> int:
    _refuse_overwrite(Path(args.output), args.overwrite)
    try:
        model, metadata = load_onnx(args.model)
    except OnnxUnavailableError as error:
        raise UsageError(str(error)) from None
    path = save_model(model, args.output, metadata)
    layers = " -> ".join(type(layer).__name__ for layer in model.layers.values())
    print(f"wrote {path}: {layers} ({model.num_parameters():,} parameters)")
    return 0


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--input-shape must be integers like 1,28,28, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise UsageError(f"--input-shape must be positive integers, got {text!r}")
    return shape


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give the file to write")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; pass --overwrite to replace it")
