"""Loading a model file with its metadata, as the explain and serve commands want them."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..datasets import DATASETS, Preprocessing
from ..explain.pixels import in_pixels
from ..images import is_dark_on_light
from ..io import load_model
from ..model import Sequential
from ..summary import dry_run


def load_with_metadata(path: str | os.PathLike[str]) -> tuple[Sequential, dict[str, Any]]:
    """(model in eval mode, the metadata saved with it as a JSON-ready dict).

    The model takes pixels in [0, 1]: a recorded standardisation runs as its first layer
    (``explain.in_pixels``), so that explanations are of the image, as predict sees it. The
    metadata always holds ``input_shape`` and ``classes``: older files that lack them get
    them inferred from the architecture.
    """
    model, metadata = load_model(path)
    channels = metadata.input_shape[0]
    preprocessing = Preprocessing.from_json(metadata.preprocessing, channels)
    model = in_pixels(model.eval(), preprocessing)
    return model, metadata.to_json()


def image_shape(model: Sequential, metadata: dict[str, Any]) -> tuple[int, int, int]:
    """(C, H, W) the model takes, as its metadata records it."""
    shape = tuple(int(v) for v in metadata["input_shape"])
    if len(shape) != 3:
        raise ValueError(f"the model takes {shape}-shaped inputs, not (C, H, W) images")
    return shape  # type: ignore[return-value]


def class_names(metadata: dict[str, Any], count: int) -> list[str]:
    names = metadata.get("classes")
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return [str(i) for i in range(count)]


def output_count(model: Sequential, shape: tuple[int, int, int]) -> int:
    *_, (_, _, y) = dry_run(model, shape)
    return int(np.prod(y.shape[1:]))


def choose_inversion(mode: str, image: np.ndarray, dataset: str | None) -> tuple[bool, bool]:
    """(invert, decided by ``auto``) for ``--invert MODE`` and one (C, H, W) image, for a
    model trained on ``dataset``.

    ``auto`` turns over a grey image that is dark on light (a drawing, a photo of paper)
    for a model of MNIST or Fashion-MNIST, whose images are light on black, as were those of
    model files that name no dataset; one's own images and colour pictures are taken as
    they are.
    """
    drawings = len(image) == 1 and (dataset is None or dataset in DATASETS)
    auto = mode == "auto" and drawings and is_dark_on_light(image[0])
    return mode == "yes" or auto, auto
