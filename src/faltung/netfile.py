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

import json
import os
from pathlib import Path
from typing import Any

from .model import Sequential

RESERVED = ("name", "type", "args")


def read_network(path: str | os.PathLike[str]) -> tuple[Sequential, tuple[int, ...] | None]:
    """The network in ``path`` (.toml or .json) and its declared input shape, if any."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
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
    """``{"name", "type", "args"}`` from a table with inline or nested arguments."""
    if not isinstance(table, dict) or "type" not in table:
        raise ValueError(f"{path}: {where}: each layer needs a 'type' (and a 'name')")
    name = str(table.get("name", where))
    args = dict(table.get("args", {}))
    args.update({k: v for k, v in table.items() if k not in RESERVED})
    for key in ("body", "shortcut"):
        if isinstance(args.get(key), list):
            args[key] = [
                _entry(path, inner, f"{name}.{key}[{i}]") for i, inner in enumerate(args[key])
            ]
    return {"name": name, "type": table["type"], "args": args}


def check_shapes(model: Sequential, input_shape: tuple[int, ...], source: Any) -> None:
    """Run one zero image through; the error names the layer whose input does not fit."""
    from .summary import dry_run

    try:
        for _ in dry_run(model, input_shape):
            pass
    except (ValueError, IndexError) as error:
        shape = "x".join(map(str, input_shape))
        raise ValueError(f"{source}: on {shape} inputs, {error}") from None
