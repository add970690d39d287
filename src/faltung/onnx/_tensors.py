"""TensorProto -> NumPy without trusting the file: sizes, types and paths are all checked.

Initializers come as raw little-endian bytes, as typed lists, or as external data in a file
beside the model. External data must lie inside the model's own directory: a location
such as ``../../etc/passwd`` or an absolute path is refused, as is a length that does not
match the declared shape.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from .errors import OnnxImportError

# ONNX TensorProto.DataType codes we read, with the typed field that may hold the values.
DTYPES: dict[int, tuple[np.dtype, str]] = {
    1: (np.dtype("<f4"), "float_data"),
    6: (np.dtype("<i4"), "int32_data"),
    7: (np.dtype("<i8"), "int64_data"),
    9: (np.dtype("bool"), "int32_data"),
    11: (np.dtype("<f8"), "double_data"),
}
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


def to_array(tensor: Any, base_dir: Path | None, what: str) -> np.ndarray:
    """The values of ``tensor`` as a fresh array; ``what`` names it in errors."""
    if tensor.data_type not in DTYPES:
        raise OnnxImportError(f"{what}: tensor element type {tensor.data_type} is not supported")
    dtype, field = DTYPES[tensor.data_type]
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise OnnxImportError(f"{what}: negative dimension in shape {dims}")
    if tensor.HasField("segment"):
        raise OnnxImportError(f"{what}: segmented tensors are not supported")
    count = math.prod(dims)
    nbytes = count * dtype.itemsize
    if tensor.data_location == EXTERNAL:
        raw = _read_external(tensor, base_dir, nbytes, what)
    elif tensor.raw_data:
        raw = tensor.raw_data
    else:
        values = getattr(tensor, field)
        if len(values) != count:
            raise OnnxImportError(f"{what}: {len(values)} values for shape {dims}")
        return np.array(values, dtype=dtype).reshape(dims)
    if len(raw) != nbytes:
        raise OnnxImportError(f"{what}: {len(raw)} bytes of data for shape {dims} of {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _read_external(tensor: Any, base_dir: Path | None, nbytes: int, what: str) -> bytes:
    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    if base_dir is None:
        raise OnnxImportError(f"{what}: external data needs the model's directory")
    parts = PurePosixPath(location).parts + PureWindowsPath(location).parts
    if not location or PureWindowsPath(location).is_absolute() or location.startswith("/"):
        raise OnnxImportError(f"{what}: external data location {location!r} is not relative")
    if ".." in parts:
        raise OnnxImportError(f"{what}: external data location {location!r} leaves the directory")
    root = base_dir.resolve()
    file = (root / location).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        raise OnnxImportError(
            f"{what}: external data file {location!r} is missing beside the model"
        )
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries.get("length", str(nbytes)))
    except ValueError:
        raise OnnxImportError(f"{what}: external data offset/length are not integers") from None
    if offset < 0 or length != nbytes:
        raise OnnxImportError(
            f"{what}: external data of {length} bytes at offset {offset}, expected {nbytes} bytes"
        )
    with open(file, "rb") as handle:
        handle.seek(offset)
        raw = handle.read(nbytes)
    if len(raw) != nbytes:
        raise OnnxImportError(f"{what}: external data file {location!r} is too short")
    return raw
