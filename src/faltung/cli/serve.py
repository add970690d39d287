"""``faltung serve MODEL.npz``: the live page on http://127.0.0.1:8000/."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from ..datasets import DatasetError, load_dataset
from ..datasets.preprocess import to_unit
from ._model import class_names, image_shape, load_with_metadata, output_count
from .errors import UsageError


def run_serve(args: argparse.Namespace) -> int:
    from ..serve import Engine, make_server, single_thread_blas

    single_thread_blas()
    model, metadata = load_with_metadata(args.model)
    shape = image_shape(model, metadata)
    classes = class_names(metadata, output_count(model, shape))
    images = labels = None
    dataset = args.dataset or metadata.get("dataset")
    note = ""
    if dataset is None:
        note = "the model file names no dataset; pass --dataset and --data"
    else:
        try:
            data = load_dataset(dataset, args.data, normalize=False)  # uint8: no float copy
        except (DatasetError, ValueError, OSError) as error:
            note = f"could not load {dataset}: {error}"
        else:
            if tuple(data.test_images.shape[1:]) == shape:
                images, labels = to_unit(data.test_images), data.test_labels
            else:
                note = f"{dataset} images are {data.test_images.shape[1:]}, the model takes {shape}"
    title = f"{Path(args.model).name}: {metadata.get('preset', 'model')}"
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
