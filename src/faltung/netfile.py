"""Networks described in a file: TOML or JSON, the layers in order, with the Python names.

```toml
input_shape = [1, 28, 28]          # optional: checked when given
[[layers]]
name = "conv1"
type = "Conv2D"                    # any class of faltung.layers
in_channels = 1                    # the constructor's arguments, inline or under args
out_channels = 20
kernel_size = 5
```

A ``Residual`` takes ``body`` (and ``shortcut``) as lists of such tables. Every error
names the layer and what is wrong; shapes are checked by running one zero image through.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .layers import ALIASES, LAYER_TYPES
from .model import Sequential

RESERVED = ("name", "type", "args")


def read_network(path: str | os.PathLike[str]) -> tuple[Sequential, tuple[int, ...] | None]:
    """The network in ``path`` (.toml or .json) and its declared input shape, if any."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's byte-order mark
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read ({error})") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib  # Python 3.11

            document = tomllib.loads(text)
        else:
            document = json.loads(text)
    except ImportError:
        raise ValueError(f"{path}: reading TOML needs Python 3.11; use JSON") from None
    except ValueError as error:
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()} ({error})") from None
    layers = document.get("layers") if isinstance(document, dict) else document
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{path}: expected a list 'layers' of tables with 'name' and 'type'")
    entries = [_entry(path, layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    try:
        model = Sequential.from_entries(entries)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    shape = document.get("input_shape") if isinstance(document, dict) else None
    if shape is not None:
        if not isinstance(shape, list) or not all(isinstance(n, int) and n > 0 for n in shape):
            raise ValueError(f"{path}: input_shape must be a list of positive integers")
        shape = tuple(shape)
        check_shapes(model, shape, path)
    return model, shape


def _entry(path: Path, table: Any, where: str) -> dict[str, Any]:
    """``{"name", "type", "args"}`` from a table with inline or nested arguments, each
    argument checked against the type its constructor declares."""
    if not isinstance(table, dict) or "type" not in table:
        raise ValueError(f"{path}: {where}: each layer needs a 'type' (and a 'name')")
    name = str(table.get("name", where))
    kind, args = table["type"], table.get("args", {})
    if not isinstance(kind, str):
        raise ValueError(f"{path}: {name}: 'type' must be a layer's class name, got {kind!r}")
    if not isinstance(args, dict):
        raise ValueError(f"{path}: {name}: 'args' must be a table of arguments, got {args!r}")
    args = {**args, **{k: v for k, v in table.items() if k not in RESERVED}}
    for key in ("body", "shortcut"):
        if key in args and args[key] is not None:
            if not isinstance(args[key], list):
                raise ValueError(
                    f"{path}: {name}: {key} must be a list of layer tables, got {args[key]!r}"
                )
            args[key] = [
                _entry(path, inner, f"{name}.{key}[{i}]") for i, inner in enumerate(args[key])
            ]
    if ALIASES.get(kind, kind) in LAYER_TYPES:  # an unknown type is named when built
        _check_arguments(path, name, ALIASES.get(kind, kind), args)
    return {"name": name, "type": kind, "args": args}


# How each declared type reads in an error message.
_KINDS = {
    "int": "an integer",
    "Sequence[int]": "a list of integers",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "None": "null",
}


def _check_arguments(path: Path, name: str, kind: str, args: dict[str, Any]) -> None:
    """Each argument of the right JSON/TOML type for its constructor's annotation (ints,
    lists of ints, numbers, booleans, strings), so that "bias": "no" is refused rather
    than taken for true. Unknown arguments are left to the constructor, which names them."""
    parameters = _declared_parameters(LAYER_TYPES[kind])
    for key, value in args.items():
        if key == "dtype":
            raise ValueError(
                f"{path}: {name}: every layer of a network file takes the model's dtype "
                "(float32); remove dtype"
            )
        if key not in parameters or key in ("body", "shortcut"):
            continue
        declared = [part.strip() for part in str(parameters[key].annotation).split("|")]
        if declared == ["Any"]:
            continue  # passed on: the constructor checks it
        if not _fits(value, declared, kind == "LpPool2D" and key == "p"):
            # Types a file cannot spell (a Communicator, a Generator) take no value from it.
            wanted = " or ".join(_KINDS[part] for part in declared if part in _KINDS)
            raise ValueError(f"{path}: {name}: {kind}'s {key} must be {wanted}, got {value!r}")


def _declared_parameters(cls: type) -> Mapping[str, inspect.Parameter]:
    """The constructor's parameters, through any that pass ``*args, **kwargs`` on to
    their base class (SyncBatchNorm2D to BatchNorm2D)."""
    for klass in cls.__mro__:
        parameters = inspect.signature(klass).parameters
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        if not any(p.kind in variadic for p in parameters.values()):
            return {**inspect.signature(cls).parameters, **parameters}
    return inspect.signature(cls).parameters


def _fits(value: Any, declared: list[str], infinity_as_text: bool) -> bool:
    if value is None:
        return "None" in declared
    if isinstance(value, bool):
        return "bool" in declared
    if isinstance(value, int):
        return "int" in declared or "float" in declared or any("np." in d for d in declared)
    if isinstance(value, float):
        return "float" in declared
    if isinstance(value, str):
        if infinity_as_text:  # LpPool2D's p = "inf": JSON has no infinity
            return value.strip().lower() in ("inf", "infinity")
        return "str" in declared
    if isinstance(value, list):
        return "Sequence[int]" in declared and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
    return False


def check_shapes(model: Sequential, input_shape: tuple[int, ...], source: Any) -> None:
    """Run one zero image through; the error names the layer whose input does not fit."""
    from .summary import dry_run

    try:
        for _ in dry_run(model, input_shape):
            pass
    except (ValueError, IndexError) as error:
        shape = "x".join(map(str, input_shape))
        raise ValueError(f"{source}: on {shape} inputs, {error}") from None
