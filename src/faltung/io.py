"""Model files: a plain .npz of named arrays plus a JSON header, never a pickle.

Layout: one array per ``state_dict`` entry (``conv1.weight`` ...) and ``__faltung__``,
the UTF-8 JSON header stored as a uint8 array. The header records the file format, the
faltung version, the architecture (``Sequential.config()``) and anything the caller adds.
Loading uses ``allow_pickle=False`` and validates everything before touching a model.

>>> # model, meta = load_model("runs/article/model.npz")
>>> # meta.input_shape, meta.classes   -> (1, 28, 28), ('0', '1', ..., '9')
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import __version__
from ._atomic import atomic_write
from .datasets.preprocess import Preprocessing
from .model import Sequential
from .summary import dry_run

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
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a {expected_format.replace('-', ' ')} file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    kind = expected_format.replace("-", " ") + " file"  # "faltung model file"
    # np.load would read anything else as a pickle and answer with advice on allow_pickle.
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a {kind} (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    # zipfile raises NotImplementedError for archive features it lacks (a version byte of
    # 6.4 in a damaged header, say), and RuntimeError for a member flagged as encrypted:
    # the file is as unusable as a corrupt one.
    except (
        zipfile.BadZipFile,
        EOFError,
        OSError,
        KeyError,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as error:
        reason = (
            "it holds pickled Python objects, which faltung never loads"
            if "pickle" in str(error)
            else str(error)
        )
        raise ModelFileError(f"{path}: not a readable faltung file ({reason})") from None
    if HEADER_KEY not in arrays:
        raise ModelFileError(f"{path}: not a {kind} (no {HEADER_KEY} header)")
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


DEFAULT_INPUT_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class ModelMetadata:
    """What a model file records about the run that made the model.

    ``input_shape`` is one image (C, H, W); ``classes`` names each output; ``test_indices``
    are the positions, in the dataset's test split, of the images the run was tested on
    (None when not recorded). Keys this version does not know are kept in ``extra``.
    """

    input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE
    classes: tuple[str, ...] = ()
    dataset: str | None = None
    preset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    test_indices: tuple[int, ...] | None = None
    # {"mean": [...], "std": [...]} per channel, from the training split (see
    # faltung.datasets.preprocess); None in files from before it was recorded: pixels in [0, 1].
    preprocessing: dict[str, list[float]] | None = None
    # datasets.fingerprint of the test images and labels of training, so that evaluate can
    # tell whether it finds them again; None in files from before it was recorded.
    test_digest: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """``images`` (N, C, H, W) as the model was trained on them: uint8 pixels (or
        floats in [0, 1]) scaled to [0, 1] and standardised with the recorded means and
        deviations, as ``faltung predict`` feeds them."""
        return Preprocessing.from_json(self.preprocessing, self.input_shape[0])(images)

    def to_json(self) -> dict[str, Any]:
        known = {
            "input_shape": list(self.input_shape),
            "classes": list(self.classes),
            "dataset": self.dataset,
            "preset": self.preset,
            "settings": dict(self.settings),
            "test_indices": None if self.test_indices is None else list(self.test_indices),
            "preprocessing": self.preprocessing,
            "test_digest": self.test_digest,
        }
        return {**self.extra, **{k: v for k, v in known.items() if v is not None}}

    @classmethod
    def from_json(cls, data: dict[str, Any], model: Sequential | None = None) -> ModelMetadata:
        """Read a header's metadata; keys missing from older files are inferred from ``model``.

        Raises ValueError when a recorded value has the wrong type.
        """
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        extra = {k: v for k, v in data.items() if k not in known}
        shape = data.get("input_shape")
        if shape is None:
            shape = infer_input_shape(model) if model is not None else DEFAULT_INPUT_SHAPE
        classes = data.get("classes")
        if not classes:
            width = output_width(model, tuple(shape)) if model is not None else None
            classes = [str(i) for i in range(width or 0)]
        indices = data.get("test_indices")
        for name, value in (
            ("input_shape", shape),
            ("classes", classes),
            ("test_indices", indices),
        ):
            if value is not None and not isinstance(value, (list, tuple)):
                raise ValueError(f"metadata: {name} must be a list, got {value!r}")
        try:
            metadata = cls(
                input_shape=tuple(int(n) for n in shape),
                classes=tuple(str(c) for c in classes),
                dataset=_optional_str(data.get("dataset")),
                preset=_optional_str(data.get("preset")),
                settings=dict(data.get("settings") or {}),
                test_indices=None if indices is None else tuple(int(i) for i in indices),
                preprocessing=_preprocessing(data.get("preprocessing")),
                test_digest=_optional_str(data.get("test_digest")),
                extra=extra,
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"metadata does not fit its fields ({error})") from None
        if any(n < 1 for n in metadata.input_shape):
            raise ValueError(f"metadata: input shape {metadata.input_shape} is not positive")
        channels = metadata.input_shape[0] if len(metadata.input_shape) == 3 else None
        if metadata.preprocessing and len(metadata.preprocessing["mean"]) != channels:
            raise ValueError(
                f"metadata: preprocessing of {len(metadata.preprocessing['mean'])} channels "
                f"for input shape {metadata.input_shape}"
            )
        return metadata


def _preprocessing(value: Any) -> dict[str, list[float]] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        raise ValueError("metadata: preprocessing must be {'mean': [...], 'std': [...]}")
    return Preprocessing.from_json(value).to_json()  # its checks: one positive std per mean


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


# Image sides to try first when a model file does not record its input shape.
COMMON_SIZES = (28, 32, 64, 96, 128, 224)


def infer_input_shape(model: Sequential) -> tuple[int, ...]:
    """The (C, H, W) a model was built for, for files that do not record it.

    Channels come from the first layer that names them; the size is the first square one
    that runs through the whole network, trying the usual sizes first (MNIST's 28, CIFAR's
    32, ...): pooling floors, so several sizes can fit. (1, 28, 28) otherwise.
    """
    layers = list(model.layers.values())
    if layers and hasattr(layers[0], "in_features") and not hasattr(layers[0], "in_channels"):
        return (int(layers[0].in_features),)
    channels = next(
        (int(layer.in_channels) for layer in layers if hasattr(layer, "in_channels")), 1
    )
    for size in (*COMMON_SIZES, *range(1, 257)):
        if output_width(model, (channels, size, size)) is not None:
            return (channels, size, size)
    return DEFAULT_INPUT_SHAPE


def output_width(model: Sequential, input_shape: tuple[int, ...]) -> int | None:
    """Number of outputs per image of ``model`` on ``input_shape``; None if it does not run."""
    try:
        with np.errstate(all="ignore"):
            *_, (_, _, y) = dry_run(model, input_shape)
    except (ValueError, IndexError, TypeError):
        return None
    return int(y.shape[-1]) if y.ndim == 2 else None


class LoadedModel(NamedTuple):
    """``model, meta = load_model(path)``: the network (in eval mode) and its metadata."""

    model: Sequential
    metadata: ModelMetadata


def save_model(
    model: Sequential,
    path: str | os.PathLike[str],
    metadata: ModelMetadata | dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (weights, buffers, architecture) atomically to ``path`` (.npz)."""
    if isinstance(metadata, ModelMetadata):
        metadata = metadata.to_json()
    header = file_header(FORMAT, model, dtype=model.dtype.name, metadata=metadata or {})
    return write_archive(path, model.state_dict(), header)


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a model file, fully read and checked for integrity."""
    return read_archive(path, FORMAT)


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Rebuild the model recorded in ``path``, load its weights, and read its metadata."""
    header, arrays = read_model_file(path)
    try:
        model = Sequential.from_config(header["architecture"])
        model.astype(np.dtype(header.get("dtype", "float32")))
        model.load_state_dict(arrays)
        raw = header.get("metadata") or {}
        if not isinstance(raw, dict):
            raise ValueError("metadata is not a JSON object")
        metadata = ModelMetadata.from_json(raw, model)
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: {error}") from None
    return LoadedModel(model.eval(), metadata)


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
