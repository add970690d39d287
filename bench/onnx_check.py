"""The ONNX bridge on the 10,000 MNIST test images, both ways.

    python -m bench.onnx_check faltung runs/lenet/model.npz --data DIR
        export a faltung model, run it in onnxruntime, compare with faltung
    python -m bench.onnx_check torch --data DIR [--epochs 1]
        train PyTorch's LeNet, export it with torch.onnx.export, import it, compare with PyTorch

Prints the largest absolute difference of the logits, that difference relative to the
largest logit, and how many of the 10,000 predicted classes differ.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import faltung.onnx as fonnx
from faltung.datasets import load_dataset
from faltung.io import load_model


def compare(name: str, got: np.ndarray, want: np.ndarray) -> dict[str, float | int | str]:
    difference = np.abs(got.astype(np.float64) - want)
    return {
        "check": name,
        "images": len(want),
        "max_abs_difference": float(difference.max()),
        "max_difference_relative_to_largest_logit": float(difference.max() / np.abs(want).max()),
        "differing_predictions": int((got.argmax(1) != want.argmax(1)).sum()),
    }


def onnxruntime_logits(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: images[i : i + 1000]})[0] for i in range(0, len(images), 1000)]
    )


def check_faltung(model_path: str, data: str | None) -> dict:
    model, metadata = load_model(model_path)
    images = load_dataset(metadata.dataset or "mnist", data).test_images
    with tempfile.TemporaryDirectory() as tmp:
        path = fonnx.export(model, Path(tmp) / "model.onnx", metadata=metadata.to_json())
        got = onnxruntime_logits(path, images)
    want = np.concatenate(list(model.iter_logits(images)))
    return compare("faltung model in onnxruntime vs faltung", got, want)


def check_torch(data: str | None, epochs: int, seed: int) -> dict:
    import torch

    from bench.torch_models import build

    torch.manual_seed(seed)
    mnist = load_dataset("mnist", data)
    net = build("lenet", threads=torch.get_num_threads())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    net.train()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(mnist.train_images))
        for start in range(0, len(order), 64):
            x, y = (
                mnist.train_images[order[start : start + 64]],
                mnist.train_labels[order[start : start + 64]],
            )
            optimizer.zero_grad()
            loss(net(torch.from_numpy(x)), torch.from_numpy(y.astype(np.int64))).backward()
            optimizer.step()
    trained = time.perf_counter() - started
    net.eval()
    images = mnist.test_images
    with torch.no_grad():
        want = np.concatenate([net(torch.from_numpy(images[i : i + 1000])).numpy()
                               for i in range(0, len(images), 1000)])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lenet.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.from_numpy(images[:2]),), path, dynamo=False,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})  # fmt: skip
        model, _ = fonnx.load(path)
    got = np.concatenate(list(model.iter_logits(images)))
    result = compare("PyTorch LeNet imported into faltung vs PyTorch", got, want)
    accuracy = float((want.argmax(1) == mnist.test_labels).mean())
    return {**result, "torch_epochs": epochs, "torch_accuracy": accuracy, "train_s": trained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="direction", required=True)
    out = sub.add_parser("faltung", help="faltung model -> onnxruntime")
    out.add_argument("model", metavar="MODEL.npz")
    out.add_argument("--data", metavar="DIR")
    into = sub.add_parser("torch", help="PyTorch LeNet -> faltung")
    into.add_argument("--data", metavar="DIR")
    into.add_argument("--epochs", type=int, default=1)
    into.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.direction == "faltung":
        result = check_faltung(args.model, args.data)
    else:
        result = check_torch(args.data, args.epochs, args.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
