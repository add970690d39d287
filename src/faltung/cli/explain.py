"""``faltung explain MODEL.npz IMAGE --out DIR``: pictures of what the network computes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..datasets import DATASETS, ImageArray
from ..datasets.preprocess import to_unit
from ..explain import activations, conv_layers, filters, integrated_gradients, occlusion, saliency
from ..explain.features import probabilities as class_probabilities
from ..explain.plots import (
    plot_attribution,
    plot_feature_maps,
    plot_filters,
    plot_probabilities,
)
from ..images import ImageError, load_image
from ..model import Sequential
from ..viz import _pyplot
from ._model import choose_inversion, class_names, image_shape, load_with_metadata
from .errors import UsageError


def load_input(path: str, shape: tuple[int, int, int], resize: bool) -> np.ndarray:
    """The image as (C, H, W) float32 in [0, 1], read as predict reads it; a model of other
    than one or three channels takes a .npy array (C, H, W) or (H, W, C)."""
    channels, h, w = shape
    if channels not in (1, 3) and Path(path).suffix.lower() != ".npy":
        raise UsageError(f"{path}: a {channels}-channel model reads .npy arrays")
    try:
        return load_image(path, (h, w), resize, channels=channels)
    except ImageError as error:
        raise UsageError(str(error)) from None


def run_explain(args: argparse.Namespace) -> int:
    if _pyplot() is None:
        raise UsageError("faltung explain draws pictures: pip install 'faltung[plot]'")
    model, metadata = load_with_metadata(args.model)
    shape = image_shape(model, metadata)
    image = load_input(args.image, shape, args.resize).astype(model.dtype)
    invert, auto = choose_inversion(args.invert, image, metadata.get("dataset"))  # as predict
    if invert:
        image = (1 - image).astype(model.dtype)
        if auto:
            print(f"{args.image}: inverted (a dark digit on a light background)")
    out = Path(args.out)
    try:
        (out / "layers").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {out / 'layers'} ({error.strerror or error})") from None

    outputs = activations(model, image)
    probabilities = class_probabilities(model, next(reversed(outputs.values()))[None])[0]
    classes = class_names(metadata, len(probabilities))
    target = int(probabilities.argmax()) if args.target is None else args.target
    if not 0 <= target < len(probabilities):
        raise UsageError(f"--class {target} is not one of the model's {len(probabilities)} classes")
    order = np.argsort(probabilities)[::-1][: args.top]
    print(f"{args.image}: " + ", ".join(f"{classes[k]} ({probabilities[k]:.3f})" for k in order))

    written: list[tuple[str, Path | None]] = []
    digits = len(str(len(outputs)))
    for old in (out / "layers").glob("[0-9]*_*.png"):  # a previous run's, maybe another model's
        old.unlink()
    for index, (name, output) in enumerate(outputs.items(), start=1):
        layer = model.layers[name]
        title = f"{name} ({type(layer).__name__}), output {tuple(output.shape)}"
        path = out / "layers" / f"{index:0{digits}d}_{name}.png"
        written.append((f"feature maps of {name}", plot_feature_maps(output, title, path)))
    convs = conv_layers(model)
    if convs:
        weights = filters(model, convs[0])
        out_c, in_c, kh, kw = weights.shape
        title = f"filters of {convs[0]}: {out_c} x {in_c} kernels of {kh}x{kw}"
        written.append(("filters", plot_filters(weights, title, out / f"filters_{convs[0]}.png")))
    label = f"class {classes[target]}"
    score = "p" if model.ends_in_softmax else "logit"
    grad = saliency(model, image, target)
    written.append(("saliency", plot_attribution(
        image, np.abs(grad).max(axis=0), f"saliency |d {score} / d x|, {label}",
        out / "saliency.png")))  # fmt: skip
    ig = integrated_gradients(model, image, target, steps=args.steps)
    written.append(("integrated gradients", plot_attribution(
        image, ig.sum(axis=0), f"integrated gradients ({args.steps} steps, black baseline), "
        f"{label}", out / "integrated_gradients.png", signed=True)))  # fmt: skip
    heat = occlusion(model, image, target)
    written.append(("occlusion", plot_attribution(
        image, heat, f"occlusion: drop in p({classes[target]}) when covered",
        out / "occlusion.png", signed=True)))  # fmt: skip
    written.append(("probabilities", plot_probabilities(
        probabilities, classes, "class probabilities", out / "probabilities.png")))  # fmt: skip
    for what, path in written:
        print(f"  {what:<28} {path}")
    return 0


def write_mistakes_gallery(
    model: Sequential, images: np.ndarray | ImageArray, labels: np.ndarray, *,
    classes: Sequence[str], count: int, path: str, pixels: np.ndarray, numbers: np.ndarray,
) -> None:  # fmt: skip
    """``faltung evaluate --misclassified N``: the N most confident mistakes as one picture.

    ``images`` are what the model reads, ``pixels`` the same images to draw (uint8, or
    floats in [0, 1]), ``numbers`` their positions in the dataset's test split.
    """
    from ..explain.mistakes import confident_mistakes
    from ..explain.plots import plot_gallery

    found = confident_mistakes(model, images, labels, count)
    if len(found.index) == 0:
        print(f"no misclassified images among {len(labels):,}: nothing to draw")
        return
    names = list(classes)
    captions = [
        f"true {names[t]}\nsaid {names[p]}\np = {q:.3f} (#{numbers[i]})"
        for i, t, p, q in zip(found.index, found.true, found.predicted, found.probability)
    ]
    what = "the mistake" if len(captions) == 1 else f"the {len(captions)} most confident mistakes"
    title = f"{what} (#: test image number)"
    try:
        drawn = plot_gallery(to_unit(pixels[found.index]), captions, title, path)
    except OSError as error:
        raise UsageError(f"cannot write {path} ({error.strerror or error})") from None
    if drawn is None:
        raise UsageError("--misclassified draws a picture: pip install 'faltung[plot]'")
    print(f"wrote {path}: {title} (of {found.total} in all)")


def port(text: str) -> int:
    """A TCP port number, 0 to 65535 (0: any free one)."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return number


def add_explain_parsers(commands, positive_int) -> None:
    """``faltung explain`` and ``faltung serve``."""
    explain = commands.add_parser(
        "explain", help="feature maps, filters and attributions of one image, as pictures"
    )
    explain.add_argument("model", metavar="MODEL.npz")
    explain.add_argument("image", metavar="IMAGE", help="PNG/JPEG or .npy, the model's size")
    explain.add_argument(
        "--out",
        metavar="DIR",
        required=True,
        help="where the pictures go (the numbered pictures of an earlier run in DIR/layers "
        "are replaced)",
    )
    explain.add_argument(
        "--class", dest="target", type=int, metavar="K", help="explain class K (default: the top)"
    )
    explain.add_argument("--top", type=positive_int, default=3, help="print the K likeliest")
    explain.add_argument(
        "--steps", type=positive_int, default=64, help="integrated-gradients steps (default 64)"
    )
    explain.add_argument("--resize", action="store_true", help="scale the image to the model's")
    explain.add_argument(
        "--invert",
        choices=["auto", "yes", "no"],
        default="auto",
        help="invert grey levels; auto (default): a grey image whose border is brighter than "
        "its centre, for a model of MNIST or Fashion-MNIST",
    )

    serve = commands.add_parser("serve", help="a live page: draw a digit, watch every layer")
    serve.add_argument("model", metavar="MODEL.npz")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8000, help="port (default 8000; 0: any free)")
    serve.add_argument(
        "--dataset",
        choices=list(DATASETS),
        help="test images for the random and mistake buttons (default: the model's dataset)",
    )
    serve.add_argument(
        "--data",
        metavar="PATH",
        help="directory with the dataset's IDX files, or your own images (a folder, .csv or "
        ".npz) for a model trained on them",
    )
