"""``faltung explain MODEL.npz IMAGE --out DIR``: pictures of what the network computes."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..datasets import DATASETS
from ..explain import activations, conv_layers, filters, integrated_gradients, occlusion, saliency
from ..explain.features import probabilities as class_probabilities
from ..explain.plots import (
    plot_attribution,
    plot_feature_maps,
    plot_filters,
    plot_probabilities,
)
from ..images import ImageError, is_dark_on_light, load_image
from ..viz import _pyplot
from ._model import class_names, image_shape, load_with_metadata
from .errors import UsageError


def load_input(path: str, shape: tuple[int, int, int], resize: bool, invert: bool) -> np.ndarray:
    """The image as (C, H, W) float32 in [0, 1] for a grey or a colour model."""
    channels, h, w = shape
    if channels == 1:
        try:
            return load_image(path, (h, w), resize, invert)
        except ImageError as error:
            raise UsageError(str(error)) from None
    if channels != 3:
        raise UsageError(f"images for a {channels}-channel model must be given as .npy")
    return _load_colour(Path(path), (h, w), resize, invert)


def _load_colour(path: Path, size: tuple[int, int], resize: bool, invert: bool) -> np.ndarray:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim == 3 and array.shape[-1] == 3 and array.shape[0] != 3:
            array = np.moveaxis(array, -1, 0)
        if array.ndim != 3 or array.shape[0] != 3:
            raise UsageError(f"{path}: expected a colour image (3, H, W), got {array.shape}")
        image = array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
        if image.shape[1:] != size:
            raise UsageError(f"{path}: image is {image.shape[1:]}, the model expects {size}")
    else:
        try:
            from PIL import Image
        except ImportError:
            raise UsageError(
                "reading image files needs Pillow: pip install 'faltung[images]'"
            ) from None
        try:
            with Image.open(path) as picture:
                picture = picture.convert("RGB")
                if picture.size != (size[1], size[0]):
                    if not resize:
                        raise UsageError(
                            f"{path}: image is {picture.size[0]}x{picture.size[1]} pixels, the "
                            f"model expects {size[1]}x{size[0]}; pass --resize to scale it"
                        )
                    picture = picture.resize((size[1], size[0]), Image.Resampling.LANCZOS)
                image = np.moveaxis(np.asarray(picture, np.float64) / 255.0, -1, 0)
        except (OSError, ValueError, SyntaxError) as error:
            raise UsageError(f"{path}: not a readable image ({error})") from None
    image = np.clip(image, 0, 1)
    return (1.0 - image if invert else image).astype(np.float32)


def run_explain(args: argparse.Namespace) -> int:
    if _pyplot() is None:
        raise UsageError("faltung explain draws pictures: pip install 'faltung[plot]'")
    model, metadata = load_with_metadata(args.model)
    shape = image_shape(model, metadata)
    image = load_input(args.image, shape, args.resize, False).astype(model.dtype)
    # As in predict: a grey dark-on-light drawing is inverted unless told otherwise.
    auto = args.invert == "auto" and shape[0] == 1 and is_dark_on_light(image[0])
    if args.invert == "yes" or auto:
        image = (1 - image).astype(model.dtype)
        if auto:
            print(f"{args.image}: inverted (a dark digit on a light background)")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {out} ({error.strerror or error})") from None

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
    for index, (name, output) in enumerate(outputs.items(), start=1):
        layer = model.layers[name]
        title = f"{name} ({type(layer).__name__}), output {tuple(output.shape)}"
        path = out / "layers" / f"{index:0{digits}d}_{name}.png"
        path.parent.mkdir(exist_ok=True)
        written.append((f"feature maps of {name}", plot_feature_maps(output, title, path)))
    convs = conv_layers(model)
    if convs:
        weights = filters(model, convs[0])
        out_c, in_c, kh, kw = weights.shape
        title = f"filters of {convs[0]}: {out_c} x {in_c} kernels of {kh}x{kw}"
        written.append(("filters", plot_filters(weights, title, out / f"filters_{convs[0]}.png")))
    label = f"class {classes[target]}"
    grad = saliency(model, image, target)
    written.append(("saliency", plot_attribution(
        image, np.abs(grad).max(axis=0), f"saliency |d logit / d x|, {label}",
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
    model, images: np.ndarray, labels: np.ndarray, classes, count: int, path: str
) -> None:
    """``faltung evaluate --misclassified N``: the N most confident mistakes as one picture."""
    from ..explain.mistakes import confident_mistakes
    from ..explain.plots import plot_gallery

    found = confident_mistakes(model, images, labels, count)
    names = list(classes)
    captions = [
        f"true {names[t]}, said {names[p]}\np = {q:.3f} (#{i})"
        for i, t, p, q in zip(found.index, found.true, found.predicted, found.probability)
    ]
    title = f"the {len(captions)} most confident mistakes"
    if plot_gallery(images[found.index], captions, title, path) is None:
        raise UsageError("--misclassified draws a picture: pip install 'faltung[plot]'")
    print(f"wrote {path}: {title} (of {int(np.sum(model.predict(images) != labels))} in all)")


def add_explain_parsers(commands, positive_int) -> None:
    """``faltung explain`` and ``faltung serve``."""
    explain = commands.add_parser(
        "explain", help="feature maps, filters and attributions of one image, as pictures"
    )
    explain.add_argument("model", metavar="MODEL.npz")
    explain.add_argument("image", metavar="IMAGE", help="PNG/JPEG or .npy, the model's size")
    explain.add_argument("--out", metavar="DIR", required=True, help="where the pictures go")
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
        help="invert grey levels; auto (default) when the border is brighter than the centre",
    )

    serve = commands.add_parser("serve", help="a live page: draw a digit, watch every layer")
    serve.add_argument("model", metavar="MODEL.npz")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    serve.add_argument(
        "--dataset",
        choices=list(DATASETS),
        help="test images for the random and mistake buttons (default: the model's dataset)",
    )
    serve.add_argument("--data", metavar="DIR", help="directory with the dataset's IDX files")
