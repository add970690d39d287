"""A checked view of an ONNX graph: producers, consumers, constants, attributes, shapes.

Nothing here runs the graph. Constants are read from initializers and Constant nodes, and
the few shape computations that exporters emit before a Reshape (Shape, Gather, Unsqueeze,
Concat, ...) are folded symbolically, with the batch size kept as a symbol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._tensors import to_array
from .errors import OnnxImportError


class Symbol:
    """A dimension known only by name: the batch size, or a size the file leaves open."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


BATCH, UNKNOWN = Symbol("N"), Symbol("?")
Dim = int | Symbol
Shape = tuple[Dim, ...]  # a chain tensor's shape, BATCH first

# AttributeProto.AttributeType codes
FLOAT, INT, STRING, TENSOR, FLOATS, INTS = 1, 2, 3, 4, 6, 7
# Small on purpose: shape subgraphs hold a handful of integers, never weights.
MAX_FOLDED_ELEMENTS = 64


def describe(node: Any) -> str:
    return f"node {node.name or '(unnamed)'!r} ({node.op_type})"


def fail(node: Any, reason: str) -> OnnxImportError:
    return OnnxImportError(f"{describe(node)}: {reason}")


@dataclass
class Graph:
    proto: Any  # GraphProto
    opset: int
    base_dir: Path | None
    producer: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, list[Any]] = field(default_factory=dict)
    initializers: dict[str, Any] = field(default_factory=dict)
    consumed: set[int] = field(default_factory=set)  # id() of nodes that became layers
    shapes: dict[str, Shape] = field(default_factory=dict)  # chain tensors seen so far
    batch_size: int | None = None  # a fixed batch size in the file, if any
    _folding: set[str] = field(default_factory=set)
    _folded: dict[str, np.ndarray] = field(default_factory=dict)  # a Constant may feed many

    def __post_init__(self) -> None:
        for tensor in self.proto.initializer:
            if tensor.name in self.initializers:
                raise OnnxImportError(f"initializer {tensor.name!r} is defined twice")
            self.initializers[tensor.name] = tensor
        if len(self.proto.sparse_initializer):
            raise OnnxImportError("sparse initializers are not supported")
        for node in self.proto.node:
            for name in node.output:
                if not name:
                    continue
                if name in self.producer or name in self.initializers:
                    raise fail(node, f"output {name!r} is defined twice")
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)

    # -- nodes ----------------------------------------------------------------------------
    def take(self, node: Any) -> None:
        if id(node) in self.consumed:
            raise fail(node, "reached twice: the graph has a cycle")
        self.consumed.add(id(node))

    def users(self, tensor: str) -> list[Any]:
        return self.consumers.get(tensor, [])

    def only_user(self, node: Any, tensor: str, op_types: tuple[str, ...]) -> Any | None:
        """The single node reading ``tensor`` if it is one of ``op_types``, else None.

        Shape nodes beside it do not count: they read only a size, and are folded into the
        node whose constant input they compute (a Reshape's target shape), or left over and
        refused.
        """
        users = [n for n in self.users(tensor) if n.op_type != "Shape"]
        if len(users) == 1 and users[0].op_type in op_types and users[0].domain in ("", "ai.onnx"):
            return users[0]
        return None

    def check_side_outputs(self, node: Any) -> None:
        """Outputs after the first (pooling indices, dropout masks, batch statistics)."""
        outputs = {o.name for o in self.proto.output}
        for name in list(node.output)[1:]:
            if name and (self.users(name) or name in outputs):
                raise fail(node, f"its output {name!r} is used; faltung computes only the first")

    # -- attributes -----------------------------------------------------------------------
    def attributes(self, node: Any, allowed: dict[str, tuple[int, Any]]) -> dict[str, Any]:
        """name -> value for ``allowed`` = {name: (type code, default)}; others are refused."""
        values = {name: default for name, (_, default) in allowed.items()}
        for attribute in node.attribute:
            if attribute.name not in allowed:
                raise fail(node, f"attribute {attribute.name!r} is not supported")
            kind = allowed[attribute.name][0]
            if attribute.type != kind:
                raise fail(node, f"attribute {attribute.name!r} has the wrong type")
            if kind == FLOAT:
                if not math.isfinite(attribute.f):
                    raise fail(node, f"attribute {attribute.name!r} is not a finite number")
                values[attribute.name] = float(attribute.f)
            elif kind == INT:
                values[attribute.name] = int(attribute.i)
            elif kind == STRING:
                values[attribute.name] = attribute.s.decode("utf-8", "replace")
            elif kind == INTS:
                values[attribute.name] = [int(v) for v in attribute.ints]
            elif kind == FLOATS:
                values[attribute.name] = [float(v) for v in attribute.floats]
            elif kind == TENSOR:
                values[attribute.name] = attribute.t
        return values

    # -- constants ------------------------------------------------------------------------
    def constant(self, node: Any, index: int, what: str) -> np.ndarray | None:
        """Input ``index`` of ``node`` as an array; None if absent; an error if computed."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        value = self.value(name)
        if value is None:
            raise fail(node, f"its {what} ({name!r}) is computed in the graph, not a constant")
        return value

    def value(self, name: str) -> np.ndarray | None:
        """The value of tensor ``name`` if it is known without running anything."""
        if name in self.initializers:
            return to_array(self.initializers[name], self.base_dir, f"initializer {name!r}")
        if name in self._folded:
            return self._folded[name]
        node = self.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx") or id(node) in self.consumed:
            return None
        if node.op_type not in FOLDABLE:
            return None
        if name in self._folding:
            raise fail(node, "its value depends on itself")
        self._folding.add(name)
        try:
            result = FOLDABLE[node.op_type](self, node)
        finally:
            self._folding.discard(name)
        if result is not None:
            result = np.asarray(result)  # a gathered symbol comes back bare
            # Identity and Cast pass on an array that is already in memory (a weight, say).
            copies = node.op_type in ("Constant", "Identity", "Cast")
            if result.size > MAX_FOLDED_ELEMENTS and not copies:
                raise fail(node, f"a shape computation of {result.size} elements is too large")
            self.take(node)
            self._folded[name] = result
        return result

    def inputs_known(self, node: Any) -> list[np.ndarray | None]:
        return [self.value(name) if name else None for name in node.input]


def _constant(g: Graph, node: Any) -> np.ndarray:
    a = g.attributes(
        node,
        {
            "value": (TENSOR, None),
            "value_float": (FLOAT, None),
            "value_floats": (FLOATS, None),
            "value_int": (INT, None),
            "value_ints": (INTS, None),
        },
    )
    given = [k for k, v in a.items() if v is not None]
    if len(given) != 1:
        raise fail(node, "needs exactly one value attribute of a supported kind")
    key = given[0]
    if key == "value":
        return to_array(a[key], g.base_dir, describe(node))
    dtype = np.float32 if "float" in key else np.int64
    return np.asarray(a[key], dtype=dtype)


def _shape(g: Graph, node: Any) -> np.ndarray | None:
    a = g.attributes(node, {"start": (INT, 0), "end": (INT, None)})
    if node.input[0] not in g.shapes:
        return None
    dims = np.array(g.shapes[node.input[0]], dtype=object)
    return dims[slice(a["start"], a["end"])]


def _known(g: Graph, node: Any, count: int) -> list[np.ndarray] | None:
    values = g.inputs_known(node)
    if len(values) < count or any(v is None for v in values[:count]):
        return None
    return values  # type: ignore[return-value]


def _integers(node: Any, value: np.ndarray | None, what: str) -> list[int]:
    if value is None or value.dtype.kind not in "iu" or value.ndim > 1:
        raise fail(node, f"{what} must be constant integers")
    return [int(v) for v in value.reshape(-1)]


def axes_of(g: Graph, node: Any, values: list[np.ndarray | None]) -> list[int]:
    """Axes from the attribute (before opset 13) or the second input."""
    a = g.attributes(node, {"axes": (INTS, None)})
    if a["axes"] is not None:
        return a["axes"]
    if len(values) > 1:
        return _integers(node, values[1], "axes")
    raise fail(node, "needs constant axes")


def _gather(g: Graph, node: Any) -> np.ndarray | None:
    a = g.attributes(node, {"axis": (INT, 0)})
    values = _known(g, node, 2)
    if values is None:
        return None
    data, indices = values[0], values[1]
    if a["axis"] != 0 or data.ndim != 1 or indices.dtype.kind not in "iu":
        raise fail(node, "only gathering constant indices from a 1-D shape is supported")
    if np.any(indices >= len(data)) or np.any(indices < -len(data)):
        raise fail(node, "index out of range")
    return np.take(data, indices)


def _unsqueeze(g: Graph, node: Any) -> np.ndarray | None:
    values = _known(g, node, 1)
    if values is None:
        return None
    result = values[0]
    for axis in sorted(axes_of(g, node, values)):
        if not -result.ndim - 1 <= axis <= result.ndim:
            raise fail(node, f"axis {axis} out of range")
        result = np.expand_dims(result, axis)
    return result


def _squeeze(g: Graph, node: Any) -> np.ndarray | None:
    values = _known(g, node, 1)
    if values is None:
        return None
    axes = tuple(axes_of(g, node, values))
    if any(not -values[0].ndim <= a < values[0].ndim or values[0].shape[a] != 1 for a in axes):
        raise fail(node, f"cannot squeeze axes {list(axes)} of shape {values[0].shape}")
    return np.squeeze(values[0], axes)


def _concat(g: Graph, node: Any) -> np.ndarray | None:
    a = g.attributes(node, {"axis": (INT, None)})
    values = _known(g, node, len(node.input))
    if values is None:
        return None
    if a["axis"] not in (0, -1) or any(v.ndim != 1 for v in values):
        raise fail(node, "only concatenating 1-D shapes is supported")
    kinds = {v.dtype.kind for v in values}
    return np.concatenate([v.astype(object) if "O" in kinds else v for v in values])


def _slice(g: Graph, node: Any) -> np.ndarray | None:
    values = _known(g, node, 1)
    if values is None:
        return None
    data = values[0]
    if data.ndim != 1:
        raise fail(node, "only slicing 1-D shapes is supported")
    if g.opset < 10:
        a = g.attributes(node, {"starts": (INTS, []), "ends": (INTS, []), "axes": (INTS, None)})
        starts, ends, steps = a["starts"], a["ends"], [1]
    else:
        starts = _integers(node, values[1] if len(values) > 1 else None, "starts")
        ends = _integers(node, values[2] if len(values) > 2 else None, "ends")
        steps = _integers(node, values[4], "steps") if len(values) > 4 else [1]
        if len(values) > 3 and values[3] is not None and _integers(node, values[3], "axes") != [0]:
            raise fail(node, "only slicing axis 0 is supported")
    if len(starts) != 1 or len(ends) != 1 or len(steps) != 1 or steps[0] == 0:
        raise fail(node, "only a single slice of a 1-D shape is supported")
    clip = len(data) + 1
    return data[max(min(starts[0], clip), -clip) : max(min(ends[0], clip), -clip) : steps[0]]


# ONNX TensorProto element types a folded Cast may produce.
CAST_TYPES = {
    1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64,
}  # fmt: skip


def _cast(g: Graph, node: Any) -> np.ndarray | None:
    a = g.attributes(node, {"to": (INT, 7), "saturate": (INT, 1)})
    values = _known(g, node, 1)
    if values is None:
        return None
    target = CAST_TYPES.get(a["to"])
    if target is None:
        raise fail(node, f"a Cast to ONNX element type {a['to']} is not supported")
    if values[0].dtype == object:  # a shape holding symbolic sizes, which are integers
        return values[0] if np.dtype(target).kind in "iu" else None
    return values[0].astype(target)


def _identity(g: Graph, node: Any) -> np.ndarray | None:
    values = _known(g, node, 1)
    return None if values is None else values[0]


FOLDABLE = {
    "Constant": _constant,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Cast": _cast,
    "Identity": _identity,
}


def known_size(dims: Shape) -> int | None:
    """The product of ``dims`` if none is symbolic."""
    if any(isinstance(d, Symbol) for d in dims):
        return None
    return math.prod(dims)  # type: ignore[arg-type]
