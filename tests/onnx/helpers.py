"""Shared by the ONNX tests: running a file in onnxruntime and comparing outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The bar: outputs agree to 1e-5 relative to the largest output.
RTOL = 1e-5


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = RTOL) -> None:
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.abs(want).max()), 1e-30)
    error = float(np.abs(got.astype(np.float64) - want).max())
    assert error <= rtol * scale, f"max difference {error:.3g} exceeds {rtol} x {scale:.3g}"


def run_onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: x})[0]


def check_file(path: Path) -> None:
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def randomize_statistics(model, seed: int = 0) -> None:
    """Give batch-norm layers non-trivial running statistics and affine parameters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers.values():
        if "running_mean" in layer.buffers:
            c = layer.buffers["running_mean"].shape
            layer.buffers["running_mean"] = rng.uniform(-1, 1, c).astype(np.float32)
            layer.buffers["running_var"] = rng.uniform(0.5, 2, c).astype(np.float32)
            if "weight" in layer.params:
                layer.params["weight"] = rng.uniform(0.5, 2, c).astype(np.float32)
                layer.params["bias"] = rng.uniform(-1, 1, c).astype(np.float32)
