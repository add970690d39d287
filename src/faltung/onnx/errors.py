"""Errors of the ONNX bridge; importable without the onnx package."""

from __future__ import annotations

from types import ModuleType

from ..io import ModelFileError


class OnnxImportError(ModelFileError):
    """An ONNX file that faltung cannot read exactly: the message names the node and why."""


class OnnxExportError(ValueError):
    """A model that has no exact ONNX counterpart (for example a custom layer)."""


class OnnxUnavailableError(ImportError):
    """The optional ``onnx`` package is missing."""


def require_onnx() -> ModuleType:
    """The ``onnx`` package, or a clear error saying how to install it."""
    try:
        import onnx
    except ImportError as error:
        raise OnnxUnavailableError(
            f"ONNX support needs the onnx package ({error}); "
            "install it with: pip install 'faltung[onnx]'"
        ) from None
    return onnx
