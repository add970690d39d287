"""ONNX in and out: ``export(model, path)`` writes a standard ONNX file, ``load(path)`` reads one.

Export maps every faltung layer to standard operators (opset :data:`OPSET`) with a dynamic
batch dimension and stores the model's metadata (class names, preprocessing, input shape)
as ``metadata_props``. Import accepts a chain of the same operators, including the patterns
that PyTorch's exporters produce, and refuses anything else with one error naming the node,
its operator and the reason; it never executes anything from the file.

The ``onnx`` package is an optional extra (``pip install 'faltung[onnx]'``): this module
imports without it and says so only when a function is called.

>>> import faltung.onnx
>>> faltung.onnx.export(model, "model.onnx", input_shape=(1, 28, 28))  # doctest: +SKIP
>>> model, metadata = faltung.onnx.load("model.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..model import Sequential
from .errors import OnnxExportError, OnnxImportError, OnnxUnavailableError

# Opset 17 is supported by every maintained runtime (onnxruntime >= 1.12, onnxruntime-web,
# TensorRT 8.6) and keeps ReduceMean/Squeeze-style attributes stable; import accepts 7 and up.
OPSET = 17


def export(
    model: Sequential,
    path: str | os.PathLike[str],
    *,
    input_shape: tuple[int, ...] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``path`` as ONNX, atomically, computing what it computes in eval mode.

    ``input_shape`` is one example's shape, e.g. ``(1, 28, 28)``; by default it comes from
    ``metadata["input_shape"]``, else only the channel count is fixed and the spatial sizes
    stay symbolic. ``metadata`` (as saved with a faltung model file) becomes metadata_props.
    Raises :class:`OnnxExportError` for a layer without an ONNX counterpart.
    """
    from ._writer import write_model

    return write_model(model, path, input_shape=input_shape, metadata=metadata)


def load(path: str | os.PathLike[str]) -> tuple[Sequential, dict[str, Any]]:
    """(model in eval mode, metadata) from an ONNX file; nothing in the file is executed.

    Raises :class:`OnnxImportError` (a :class:`faltung.io.ModelFileError`) naming the node,
    its operator and the reason for any graph faltung cannot represent exactly, and for
    malformed, truncated or hostile files.
    """
    from ._reader import read_model

    return read_model(path)


__all__ = ["OPSET", "OnnxExportError", "OnnxImportError", "OnnxUnavailableError", "export", "load"]
