"""Model files: a plain .npz of named arrays plus a JSON header, never a pickle.

Layout: one array per ``state_dict`` entry (``conv1.weight`` ...) and ``__faltung__``,
the UTF-8 JSON header stored as a uint8 array. The header records the file format, the
faltung version, the architecture (``Sequential.config()``) and anything the caller adds.
Loading uses ``allow_pickle=False`` and validates everything before touching a model.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._atomic import atomic_write
from .model import Sequential

HEADER_KEY = "__faltung__"
FORMAT = "faltung-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be trusted or does not fit: the message says why."""


def write_archive(
    path: str | os.PathLike[str], arrays: dict[str, np.ndarray], header: dict
) -> Path:
    """Atomically write named arrays plus a JSON header as .npz (no pickles).

    Floating arrays must be finite: a NaN or infinity is refused before anything is
    written, so a diverged run can never overwrite good weights.
    """
    bad = [k for k, v in arrays.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"refusing to write {path}: NaN or infinity in {', '.join(bad[:5])}")
    payload = dict(arrays)
    payload[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    target = Path(path)
    with atomic_write(target) as handle:
        np.savez(handle, **payload)
    return target


def read_archive(
    path: str | os.PathLike[str], expected_format: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of an archive written by :func:`write_archive`, fully checked."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable faltung file ({error})") from None
    if HEADER_KEY not in arrays:
        raise ModelFileError(f"{path}: not a faltung file (no {HEADER_KEY} header)")
    raw = arrays.pop(HEADER_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("header is not a byte string")
        header = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: corrupt header ({error})") from None
    if header.get("format") != expected_format or header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: expected a {expected_format} file (version {FORMAT_VERSION}), found "
            f"{header.get('format')!r} version {header.get('format_version')!r} written by "
            f"faltung {header.get('faltung_version', 'unknown')}"
        )
    if not isinstance(header.get("architecture"), list):
        raise ModelFileError(f"{path}: header has no architecture")
    written_by = header.get("faltung_version")
    if not isinstance(written_by, str) or _version_tuple(written_by) is None:
        raise ModelFileError(f"{path}: header records no valid faltung version ({written_by!r})")
    if _version_tuple(written_by) > _version_tuple(__version__):
        raise ModelFileError(
            f"{path}: written by faltung {written_by}, newer than this faltung {__version__}; "
            f"upgrade faltung to read it"
        )
    return header, arrays


def _version_tuple(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def file_header(kind: str, model: Sequential, **fields: Any) -> dict[str, Any]:
    return {
        "format": kind,
        "format_version": FORMAT_VERSION,
        "faltung_version": __version__,
        "architecture": model.config(),
        **fields,
    }


def save_model(
    model: Sequential, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (weights, buffers, architecture) atomically to ``path`` (.npz)."""
    header = file_header(FORMAT, model, dtype=model.dtype.name, metadata=metadata or {})
    return write_archive(path, model.state_dict(), header)


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a model file, fully read and checked for integrity."""
    return read_archive(path, FORMAT)


def load_model(path: str | os.PathLike[str]) -> Sequential:
    """Rebuild the model recorded in ``path`` and load its weights."""
    header, arrays = read_model_file(path)
    try:
        model = Sequential.from_config(header["architecture"])
        model.astype(np.dtype(header.get("dtype", "float32")))
        model.load_state_dict(arrays)
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: {error}") from None
    model.metadata = header.get("metadata", {})  # type: ignore[attr-defined]
    return model.eval()


def load_weights(model: Sequential, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load the weights in ``path`` into ``model`` if the architectures match exactly.

    Raises ModelFileError, leaving ``model`` unchanged, if they do not. Returns the header.
    """
    header, arrays = read_model_file(path)
    if header["architecture"] != json_roundtrip(model.config()):
        raise ModelFileError(
            f"{path}: the file holds another architecture "
            f"({describe(header['architecture'])}) than this model ({describe(model.config())})"
        )
    try:
        model.load_state_dict(arrays)
    except ValueError as error:
        raise ModelFileError(f"{path}: {error}") from None
    return header


def describe(architecture: list[dict[str, Any]]) -> str:
    return " -> ".join(entry.get("type", "?") for entry in architecture)


def json_roundtrip(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))
