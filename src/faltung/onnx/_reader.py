"""ONNX -> faltung: walk the chain from the graph input to its output, one importer per step.

Every node must be used exactly once, as a layer, as part of an exporter pattern folded into
a layer, or as a constant; anything left over is an error. The model is assembled only after
the whole graph has been read, so a refused file leaves nothing half-imported.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..io import ModelMetadata
from ..layers import Residual
from ..model import Sequential
from . import _pool_ops  # noqa: F401  (registers the pooling importers)
from ._graph import BATCH, UNKNOWN, Graph, Shape, describe, fail
from ._ops import IMPORTERS, Step
from ._writer import PIPELINE_PREPROCESSING
from .errors import OnnxImportError, require_onnx

MIN_OPSET = 7
LAYER_PREFIX = {
    "Conv2D": "conv", "Dense": "fc", "BatchNorm1D": "bn", "BatchNorm2D": "bn",
    "MaxPool2D": "pool", "AvgPool2D": "pool", "LpPool2D": "pool", "GlobalAvgPool2D": "gap",
    "Flatten": "flatten", "ReLU": "relu", "LeakyReLU": "relu", "Sigmoid": "sigmoid",
    "Tanh": "tanh", "Softmax": "softmax", "Dropout": "dropout", "Identity": "identity",
    "Residual": "block",
}  # fmt: skip
PLAIN_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\Z")
ELEMENT_TYPES = {1: np.dtype(np.float32), 11: np.dtype(np.float64)}


def read_model(path: str | os.PathLike[str]) -> tuple[Sequential, dict[str, Any]]:
    onnx = require_onnx()
    path = Path(path)
    if path.is_dir():
        raise OnnxImportError(f"{path} is a folder, not an ONNX file")
    if not path.is_file():
        raise OnnxImportError(f"{path}: no such file")
    try:
        proto = onnx.ModelProto.FromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError and friends: the bytes are not ONNX
        raise OnnxImportError(f"{path}: not a readable ONNX file ({error})") from None
    try:
        model, metadata = build(proto, path.parent)
    except OnnxImportError as error:
        raise OnnxImportError(f"{path}: {error}") from None
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, RecursionError) as error:
        # A layer refusing its arguments, or a field of a malformed file we did not foresee.
        raise OnnxImportError(
            f"{path}: malformed graph ({type(error).__name__}: {error})"
        ) from None
    try:
        ModelMetadata.from_json(metadata, model)  # what a model file must hold
    except ValueError as error:
        raise OnnxImportError(f"{path}: its metadata_props: {error}") from None
    return model, metadata


def build(proto: Any, base_dir: Path | None) -> tuple[Sequential, dict[str, Any]]:
    """(model, metadata) from a parsed ModelProto; weights may live in ``base_dir``."""
    opsets = {o.domain: o.version for o in proto.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx"))
    if opset is None or opset < MIN_OPSET:
        raise OnnxImportError(f"needs the standard ONNX opset {MIN_OPSET} or newer, has {opset}")
    graph = Graph(proto.graph, opset, base_dir)
    x, dtype, shape = _graph_input(graph)
    output = _graph_output(graph)
    graph.shapes[x] = shape

    steps, x, shape, _ = _read_chain(graph, x, shape, output)
    if graph.users(x):
        raise fail(graph.users(x)[0], "reads the graph's output: only chains are supported")
    leftover = [n for n in graph.proto.node if id(n) not in graph.consumed and not _dead(graph, n)]
    if leftover:
        raise fail(leftover[0], "is not part of the chain from the graph's input to its output")
    if not steps:
        raise OnnxImportError("the graph has no operators between its input and output")
    return _assemble(steps, dtype), _metadata(proto, shape_of_input(graph))


def _graph_input(graph: Graph) -> tuple[str, np.dtype, Shape]:
    inputs = [v for v in graph.proto.input if v.name not in graph.initializers]
    if len(inputs) != 1:
        raise OnnxImportError(f"expected one graph input, found {len(inputs)}")
    value = inputs[0]
    kind = value.type.WhichOneof("value")
    tensor = value.type.tensor_type
    if kind != "tensor_type" or tensor.elem_type not in ELEMENT_TYPES:
        raise OnnxImportError(f"input {value.name!r} must be a float or double tensor")
    dims: list[int | Any] = []
    for dim in tensor.shape.dim:
        dims.append(dim.dim_value if dim.WhichOneof("value") == "dim_value" else UNKNOWN)
    if len(dims) not in (2, 4):
        raise OnnxImportError(f"input {value.name!r} must be (N, C, H, W) or (N, features)")
    if any(isinstance(d, int) and d < 1 for d in dims):
        raise OnnxImportError(f"input {value.name!r} has a non-positive size {dims}")
    if isinstance(dims[0], int):
        graph.batch_size = dims[0]  # fixed at export time; constants may repeat it
    return value.name, ELEMENT_TYPES[tensor.elem_type], (BATCH, *dims[1:])


def shape_of_input(graph: Graph) -> Shape:
    inputs = [v for v in graph.proto.input if v.name not in graph.initializers]
    return graph.shapes[inputs[0].name]


def _graph_output(graph: Graph) -> str:
    outputs = graph.proto.output
    if len(outputs) != 1:
        raise OnnxImportError(f"expected one graph output, found {len(outputs)}")
    return outputs[0].name


def _read_chain(
    graph: Graph, x: str, shape: Shape, output: str, in_block: bool = False
) -> tuple[list[Step], str, Shape, Any]:
    """The steps from tensor ``x`` to the graph's output; inside a residual block, up to the
    Add that ends the branch, which is returned last (None otherwise)."""
    steps: list[Step] = []
    while x != output:
        users = _users(graph, x)
        if len(users) > 1:  # a fork: residual blocks, whose branches meet in Adds
            step = _read_block(graph, x, shape, users, output)
        else:
            node = users[0]
            if in_block and node.op_type == "Add":
                return steps, x, shape, node
            step = _read_step(graph, node, x, shape)
        steps.append(step)
        x, shape = step.output, step.shape
        graph.shapes[x] = shape
    if in_block:
        raise _NoAdd(f"a branch from tensor {x!r} reaches the output without an Add")
    return steps, x, shape, None


class _NoAdd(OnnxImportError):
    """A branch of a residual block that never meets the other in an Add."""


def _users(graph: Graph, x: str) -> list[Any]:
    # Shape nodes only read a size; they are folded into the Reshape that uses them.
    users = [n for n in graph.users(x) if n.op_type != "Shape" and id(n) not in graph.consumed]
    users = list({id(n): n for n in users}.values())  # a node may read x twice
    if not users:
        raise OnnxImportError(f"tensor {x!r} leads nowhere: it is not the graph's output")
    return users


def _read_step(graph: Graph, node: Any, x: str, shape: Shape) -> Step:
    if node.domain not in ("", "ai.onnx"):
        raise fail(node, f"operator of domain {node.domain!r} is not supported")
    importer = IMPORTERS.get(node.op_type)
    if importer is None:
        reason = "an Add outside a residual block" if node.op_type == "Add" else "operator"
        raise fail(node, f"{reason} not supported (faltung reads chains of standard CNN ops)")
    if list(node.input).index(x) != 0:
        raise fail(node, "the chain must enter as its first input")
    step = importer(graph, node, shape)
    for used in step.nodes:
        graph.take(used)
    return step


def _read_block(graph: Graph, x: str, shape: Shape, users: list[Any], output: str) -> Step:
    """The residual block that starts at the fork ``x``: ``Residual(body, shortcut)``.

    Every branch from ``x`` is read up to the Add it ends in (an Add reading ``x`` itself is
    an identity shortcut). A block nested at the start of a branch forks at ``x`` too, so
    ``x`` feeds more than two nodes then: the two branches that meet in one Add are the
    innermost block, read first; the branch it starts continues from its sum to the next
    Add, until one block is left.
    """
    arms: list[tuple[list[Step], str, Shape, Any]] = []  # (steps, end tensor, shape, Add)
    for first in users:
        if first.op_type == "Add" and first.domain in ("", "ai.onnx"):
            arms.append(([], x, shape, first))
            continue
        step = _read_step(graph, first, x, shape)
        graph.shapes[step.output] = step.shape
        steps, end, end_shape, add = _read_chain(graph, step.output, step.shape, output, True)
        arms.append(([step, *steps], end, end_shape, add))
    while True:
        pairs = [(i, j) for i in range(len(arms)) for j in range(i) if arms[i][3] is arms[j][3]]
        if not pairs:
            raise _unpaired(x, arms)
        i, j = pairs[0]
        block = _residual(graph, arms[j], arms[i])
        arms = [arm for k, arm in enumerate(arms) if k not in (i, j)]
        if not arms:
            return block
        graph.shapes[block.output] = block.shape
        try:
            steps, end, end_shape, add = _read_chain(graph, block.output, block.shape, output, True)
        except _NoAdd:  # the block was whole: what is left meets nothing
            raise _unpaired(x, arms) from None
        arms.append(([block, *steps], end, end_shape, add))


def _unpaired(x: str, arms: list[tuple[list[Step], str, Shape, Any]]) -> OnnxImportError:
    """The error for branches from ``x`` that no residual Add joins, naming where each
    starts (its first node, or the Add that reads ``x`` itself)."""
    starts = ", ".join(describe(steps[0].nodes[0] if steps else add) for steps, _, _, add in arms)
    return OnnxImportError(
        f"tensor {x!r} starts branches that meet in no residual Add ({starts}): only chains and "
        "residual blocks (two branches joined by an Add) are supported"
    )


def _residual(graph: Graph, *branches: tuple[list[Step], str, Shape, Any]) -> Step:
    """``Residual(body, shortcut)`` of two branches that end in the same Add; a branch of no
    steps is the identity shortcut, otherwise the branch feeding the Add's first input is
    the body (the order faltung and PyTorch write)."""
    add = branches[0][3]
    if len(add.input) != 2 or sorted(add.input) != sorted(b[1] for b in branches):
        raise fail(add, "a residual Add must add exactly the two branches of one fork")
    body, shortcut = sorted(branches, key=lambda b: list(add.input).index(b[1]))
    if not body[0]:
        body, shortcut = shortcut, body
    if body[2] != shortcut[2]:
        raise fail(add, f"adds shapes {body[2]} and {shortcut[2]}: broadcasting is not supported")
    graph.take(add)
    names = {"body": _names(body[0]), "shortcut": _names(shortcut[0])}
    layer = Residual(
        list(zip(names["body"], (s.layer for s in body[0]))),
        shortcut=list(zip(names["shortcut"], (s.layer for s in shortcut[0]))) or None,
    )
    state = {
        f"{part}.{name}.{key}": value
        for part, branch in (("body", body[0]), ("shortcut", shortcut[0]))
        for name, step in zip(names[part], branch)
        for key, value in step.state.items()
    }
    return Step(layer, state, [add], add.output[0], body[2])


def _names(steps: list[Step]) -> list[str]:
    return [_layer_name(step, steps[:i]) for i, step in enumerate(steps)]


def _dead(graph: Graph, node: Any) -> bool:
    """A Constant nobody reads is harmless; anything else left over is an error."""
    return node.op_type == "Constant" and not any(graph.users(o) for o in node.output)


def _assemble(steps: list[Step], dtype: np.dtype) -> Sequential:
    names = [_layer_name(step, steps[:i]) for i, step in enumerate(steps)]
    model = Sequential(list(zip(names, (s.layer for s in steps))))
    model.astype(dtype)
    state: dict[str, np.ndarray] = {}
    for name, step in zip(names, steps):
        for key, value in step.state.items():
            counter = key.endswith("num_batches_tracked")
            kind_matches = value.dtype.kind == "f" or counter
            if not kind_matches:
                raise fail(step.nodes[0], f"{key} must be floating point")
            state[f"{name}.{key}"] = value if counter else value.astype(dtype)
    try:
        model.load_state_dict(state)
    except ValueError as error:
        raise OnnxImportError(str(error)) from None
    return model.eval()


def _layer_name(step: Step, earlier: list[Step]) -> str:
    """A node's plain name (as faltung writes them, the last part of a dotted one inside a
    residual block) if it has one, else conv1, fc2, ..."""
    taken = {s.name for s in earlier}
    names = [n.name.rsplit(".", 1)[-1] for n in step.nodes]
    plain = [name for name in names if PLAIN_NAME.match(name) and name not in taken]
    if plain:
        step.name = plain[0]
        return step.name
    prefix = LAYER_PREFIX.get(type(step.layer).__name__, "layer")
    number = 1 + sum(1 for s in earlier if type(s.layer) is type(step.layer))
    while f"{prefix}{number}" in taken:
        number += 1
    step.name = f"{prefix}{number}"
    return step.name


def _metadata(proto: Any, input_shape: Shape) -> dict[str, Any]:
    """faltung's own record if the file has one, else what the standard keys say."""
    props = {p.key: p.value for p in proto.metadata_props}
    metadata = _json(props.get("faltung.metadata"), dict) or {}
    classes = _json(props.get("class_names"), list)
    if "classes" not in metadata and classes and all(isinstance(c, str) for c in classes):
        metadata["classes"] = classes
    preprocessing = props.get("preprocessing")
    standardisation = _standardisation(_json(preprocessing, dict))
    if "preprocessing" not in metadata and standardisation is not None:
        metadata["preprocessing"] = standardisation
    dims = input_shape[1:]
    if "input_shape" not in metadata and all(isinstance(d, int) for d in dims):
        metadata["input_shape"] = list(dims)
    metadata["onnx"] = {
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "opset": max(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0
        ),
    }
    if preprocessing is not None and standardisation is None:
        metadata["onnx"]["preprocessing"] = preprocessing  # another tool's description, kept
    return metadata


def _standardisation(prop: dict[str, Any] | None) -> dict[str, list[float]] | None:
    """faltung's {mean, std} from a ``preprocessing`` prop that describes its pipeline
    (pixels divided by 255, then each channel standardised), else None."""
    scale = None if prop is None else prop.get("scale")
    if not _is_number(scale) or not math.isclose(scale, PIPELINE_PREPROCESSING["scale"]):
        return None  # mean and std in other units, or of another pipeline
    values = [prop.get("mean"), prop.get("std")]
    if not all(isinstance(v, list) and v and all(_is_number(n) for n in v) for v in values):
        return None
    if len(values[0]) != len(values[1]) or min(values[1]) <= 0:
        return None
    return {"mean": [float(n) for n in values[0]], "std": [float(n) for n in values[1]]}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json(text: str | None, kind: type | tuple[type, ...]) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, kind) else None
