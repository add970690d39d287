"""``faltung serve MODEL.npz``: the live page on http://127.0.0.1:8000/."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import DATASETS, DatasetError, is_own_data, load_dataset
from ..datasets.preprocess import to_unit
from ._model import class_names, image_shape, load_with_metadata, output_count
from .errors import UsageError
from .inspect import in_model_classes, split_as_in_training


def sample_images(
    args: argparse.Namespace, metadata: dict[str, Any], shape: tuple[int, int, int]
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The page's test images (floats in [0, 1]) with their labels as the model's class
    numbers, or None and why not: a known dataset's, or one's own images given as --data
    (the test split of training, drawn as evaluate draws it)."""
    dataset = args.dataset or metadata.get("dataset")
    try:
        if is_own_data(args.data):
            data = split_as_in_training(args.data, shape, metadata.get("settings") or {})
        elif dataset in DATASETS:
            data = load_dataset(dataset, args.data, normalize=False)  # uint8: only test to float
        elif dataset is None:
            return None, None, "the model file names no dataset; pass --dataset and --data"
        else:
            return None, None, f"the model was trained on your own images ({dataset}); pass --data"
        _, labels = in_model_classes(tuple(metadata["classes"]), data, data.test_labels)
    except (DatasetError, UsageError, ValueError, OSError) as error:
        return None, None, f"could not load {args.data or dataset}: {error}"
    if tuple(data.test_images.shape[1:]) != shape:
        return None, None, f"the images are {data.test_images.shape[1:]}, the model takes {shape}"
    return to_unit(data.test_images), labels, ""


def run_serve(args: argparse.Namespace) -> int:
    from ..serve import Engine, make_server, single_thread_blas

    single_thread_blas()
    model, metadata = load_with_metadata(args.model)
    shape = image_shape(model, metadata)
    classes = class_names(metadata, output_count(model, shape))
    images, labels, note = sample_images(args, metadata, shape)
    # The preset recorded is the one whose settings trained it, not always its network.
    dataset = metadata.get("dataset")
    title = Path(args.model).name + (f", trained on {dataset}" if dataset else "")
    engine = Engine(model, shape, classes, title, images, labels, note)
    try:
        server = make_server(engine, args.host, args.port)
    except OSError as error:
        message = f"cannot listen on {args.host}:{args.port} ({error.strerror or error})"
        raise UsageError(message) from None
    if images is not None:
        # Find the mistakes now, so that the first click on "mistakes" need not wait.
        threading.Thread(target=engine.mistakes, daemon=True).start()
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"faltung serve: http://{shown}:{port}/  ({title}; Ctrl-C stops)", flush=True)
    if note:
        print(f"note: no test images on the page: {note}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("faltung serve: stopped")
    finally:
        server.server_close()
    return 0
