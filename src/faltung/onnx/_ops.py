"""ONNX operators -> faltung layers. Each importer reads one node (or one exporter pattern
of a few nodes) starting at the chain tensor, checks that faltung computes exactly the same
thing, and returns the layer, its weights and the tensor it produces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..functional.shapes import output_size, resolve_padding
from ..layers import (
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Identity,
    Layer,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from ._graph import BATCH, FLOAT, INT, INTS, STRING, UNKNOWN, Graph, Shape, Symbol, fail, known_size


@dataclass
class Step:
    """What one importer read: the layer, its state, the nodes used and the output tensor."""

    layer: Layer
    state: dict[str, np.ndarray]
    nodes: list[Any]
    output: str
    shape: Shape
    name: str = ""  # the layer's name in the model, chosen once the whole chain is read


Importer = Callable[[Graph, Any, Shape], Step]
# op type -> importer; the residual Add that joins two branches is read by the chain reader.
IMPORTERS: dict[str, Importer] = {}


def imports(*op_types: str) -> Callable[[Importer], Importer]:
    def register(function: Importer) -> Importer:
        for op in op_types:
            IMPORTERS[op] = function
        return function

    return register


def short_float(value: float) -> float:
    """The shortest decimal that is the same float32: 1e-05 rather than 9.99999974738e-06."""
    return float(str(np.float32(value)))


def spatial(node: Any, shape: Shape) -> tuple[Dim2, Dim2]:
    if len(shape) != 4:
        raise fail(node, f"expects (N, C, H, W) input, but its input has shape {shape_text(shape)}")
    return shape[2], shape[3]  # type: ignore[return-value]


Dim2 = int | Symbol


def shape_text(shape: Shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def pair_attr(node: Any, values: list[int] | None, default: int, what: str) -> tuple[int, int]:
    if values is None:
        return default, default
    if len(values) != 2:
        raise fail(node, f"{what} {values}: only 2-D windows are supported")
    return values[0], values[1]


def pads_of(
    node: Any, a: dict[str, Any], kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int], hw: tuple[Dim2, Dim2],
) -> list[int]:  # fmt: skip
    """[top, left, bottom, right], with auto_pad resolved the way ONNX defines it."""
    mode = a.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        pads = a["pads"] if a["pads"] is not None else [0, 0, 0, 0]
        if len(pads) != 4 or min(pads) < 0:
            raise fail(node, f"pads {pads} must be four non-negative numbers")
        return pads
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise fail(node, f"auto_pad {mode!r} is not supported")
    totals = []
    for size, k, s, d in zip(hw, kernel, stride, dilation):
        if s == 1:
            totals.append(d * (k - 1))
        elif isinstance(size, Symbol):
            raise fail(node, f"auto_pad {mode} at stride {s} needs a known input size")
        else:
            totals.append(max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0))
    small = [t // 2 for t in totals]
    large = [t - t // 2 for t in totals]
    begin, end = (small, large) if mode == "SAME_UPPER" else (large, small)
    return [*begin, *end]


def out_size(size: Dim2, kernel: int, stride: int, pad: tuple[int, int], dilation: int = 1) -> Dim2:
    return UNKNOWN if isinstance(size, Symbol) else output_size(size, kernel, stride, pad, dilation)


# Far beyond any CNN that fits in memory: a larger map means a hostile or broken file.
MAX_MAP_PIXELS = 2**26


def check_fits(node: Any, out_hw: tuple[Dim2, Dim2], hw: tuple[Dim2, Dim2]) -> None:
    if any(isinstance(o, int) and o < 1 for o in out_hw):
        raise fail(node, f"the window does not fit its input of size {hw[0]}x{hw[1]}")
    size = known_size(out_hw)
    if size is not None and size > MAX_MAP_PIXELS:
        raise fail(node, f"an output map of {out_hw[0]}x{out_hw[1]} pixels is implausibly large")


@imports("Conv")
def conv(g: Graph, node: Any, shape: Shape) -> Step:
    a = g.attributes(
        node,
        {
            "kernel_shape": (INTS, None),
            "strides": (INTS, None),
            "pads": (INTS, None),
            "dilations": (INTS, None),
            "group": (INT, 1),
            "auto_pad": (STRING, "NOTSET"),
        },
    )
    hw = spatial(node, shape)
    weight = g.constant(node, 1, "weight")
    bias = g.constant(node, 2, "bias")
    if weight is None or weight.ndim != 4 or weight.dtype.kind != "f":
        raise fail(node, "only 2-D convolution with a constant 4-D float weight is supported")
    out_channels, in_per_group, kh, kw = weight.shape
    kernel = pair_attr(node, a["kernel_shape"], 0, "kernel_shape")
    if a["kernel_shape"] is not None and kernel != (kh, kw):
        raise fail(node, f"kernel_shape {list(kernel)} does not match the weight {weight.shape}")
    stride = pair_attr(node, a["strides"], 1, "strides")
    dilation = pair_attr(node, a["dilations"], 1, "dilations")
    groups = a["group"]
    if groups < 1 or min(stride) < 1 or min(dilation) < 1 or out_channels % groups:
        raise fail(node, "group, strides and dilations must be positive, group dividing M")
    in_channels = in_per_group * groups
    if isinstance(shape[1], int) and shape[1] != in_channels:
        raise fail(node, f"weight expects {in_channels} input channels, input has {shape[1]}")
    if bias is not None and bias.shape != (out_channels,):
        raise fail(node, f"bias of shape {bias.shape} does not match {out_channels} channels")
    top, left, bottom, right = pads_of(node, a, (kh, kw), stride, dilation, hw)
    same = resolve_padding("same", (kh, kw), dilation, (1, 1))
    if top == bottom and left == right:
        padding: tuple[int, int] | str = (top, left)
    elif stride == (1, 1) and ((top, bottom), (left, right)) == same:
        padding = "same"  # the odd pixel at the bottom/right, as faltung (and PyTorch) do
    else:
        raise fail(
            node,
            f"asymmetric padding {[top, left, bottom, right]} is not supported "
            "(Conv2D pads symmetrically, or 'same' at stride 1 with the extra pixel at the end)",
        )
    out_hw = tuple(
        out_size(s, k, st, p, d)
        for s, k, st, p, d in zip(hw, (kh, kw), stride, ((top, bottom), (left, right)), dilation)
    )
    check_fits(node, out_hw, hw)  # type: ignore[arg-type]
    layer = Conv2D(
        in_channels, out_channels, (kh, kw), stride, padding, dilation, groups, bias is not None
    )
    state = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    return Step(layer, state, [node], node.output[0], (BATCH, out_channels, *out_hw))


def scalar(g: Graph, node: Any, index: int, what: str) -> float:
    value = g.constant(node, index, what)
    if value is None or value.size != 1 or value.dtype.kind not in "fiu":
        raise fail(node, f"its {what} must be a constant number")
    return float(value.reshape(()))


@imports("Flatten")
def flatten(g: Graph, node: Any, shape: Shape) -> Step:
    axis = g.attributes(node, {"axis": (INT, 1)})["axis"]
    if axis < 0:
        axis += len(shape)
    if axis != 1:
        raise fail(node, f"flattening at axis {axis} is not supported (faltung keeps axis 0 only)")
    return Step(Flatten(), {}, [node], node.output[0], (BATCH, _product(shape[1:])))


def _product(dims: Shape) -> int | Symbol:
    size = known_size(dims)
    return UNKNOWN if size is None else size


@imports("Reshape")
def reshape(g: Graph, node: Any, shape: Shape) -> Step:
    """Accepted when it is a flatten: to (N, -1), (N, C*H*W), (0, -1) or (-1, C*H*W)."""
    allow_zero = g.attributes(node, {"allowzero": (INT, 0)})["allowzero"]
    target = g.constant(node, 1, "target shape")
    features = known_size(shape[1:])
    why = "only a Reshape that flattens (N, ...) to (N, features) is supported"
    if target is None or target.ndim != 1 or len(target) != 2 or target.dtype.kind not in "iuO":
        raise fail(node, why)
    first, second = target.tolist()
    keeps_batch = (
        first is BATCH
        or (first == 0 and not allow_zero)
        or (g.batch_size is not None and first == g.batch_size)
    )
    if keeps_batch:
        fits = second == -1 or (features is None and isinstance(second, int) and second > 0)
        fits = fits or (isinstance(second, int) and second == features)
    elif first == -1:
        if features is None:
            raise fail(node, f"{why}; with an input of unknown size, (-1, K) cannot be checked")
        fits = second == features
    else:
        fits = False
    if not fits:
        raise fail(node, f"{why}; target {target.tolist()} on input {shape_text(shape)}")
    return Step(Flatten(), {}, [node], node.output[0], (BATCH, _product(shape[1:])))


@imports("Gemm")
def gemm(g: Graph, node: Any, shape: Shape) -> Step:
    a = g.attributes(
        node,
        {"alpha": (FLOAT, 1.0), "beta": (FLOAT, 1.0), "transA": (INT, 0), "transB": (INT, 0)},
    )
    if a["transA"]:
        raise fail(node, "transA=1 is not supported (the input must be (N, features))")
    matrix = g.constant(node, 1, "weight")
    if matrix is None or matrix.ndim != 2 or matrix.dtype.kind != "f":
        raise fail(node, "needs a constant 2-D float weight")
    weight = matrix if a["transB"] else matrix.T
    if a["alpha"] != 1.0:
        weight = weight * np.asarray(a["alpha"], weight.dtype)
    bias = g.constant(node, 2, "bias")
    if bias is not None and a["beta"] != 1.0:
        bias = bias * np.asarray(a["beta"], bias.dtype)
    return _dense(g, node, shape, weight, bias, [node], node.output[0])


@imports("MatMul")
def matmul(g: Graph, node: Any, shape: Shape) -> Step:
    """MatMul by a constant (in, out) matrix, and the Add of a bias after it if there is one."""
    matrix = g.constant(node, 1, "weight")
    if matrix is None or matrix.ndim != 2 or matrix.dtype.kind != "f":
        raise fail(node, "is supported only as x @ W with a constant 2-D float W")
    nodes, output, bias = [node], node.output[0], None
    add = g.only_user(node, output, ("Add",))
    # An Add of a constant is the bias; an Add of a computed tensor ends a residual block.
    if add is not None:
        bias = g.value(add.input[1 if add.input[0] == output else 0])
        if bias is not None:
            nodes.append(add)
            output = add.output[0]
    return _dense(g, node, shape, np.ascontiguousarray(matrix.T), bias, nodes, output)


def _dense(
    g: Graph, node: Any, shape: Shape, weight: np.ndarray, bias: np.ndarray | None,
    nodes: list[Any], output: str,
) -> Step:  # fmt: skip
    out_features, in_features = weight.shape
    if len(shape) != 2:
        raise fail(
            node, f"expects (N, features) input, but its input has shape {shape_text(shape)}"
        )
    if isinstance(shape[1], int) and shape[1] != in_features:
        raise fail(node, f"weight expects {in_features} features, the input has {shape[1]}")
    if bias is not None:
        if bias.dtype.kind != "f" or bias.size not in (1, out_features) or bias.ndim > 2:
            raise fail(node, f"bias of shape {bias.shape} is not one value per output")
        if bias.ndim == 2 and bias.shape[0] != 1:
            raise fail(node, f"bias of shape {bias.shape} is not one value per output")
        bias = np.broadcast_to(bias.reshape(-1), (out_features,)).copy()
    layer = Dense(in_features, out_features, bias is not None)
    state = {"weight": weight} if bias is None else {"weight": weight, "bias": bias}
    return Step(layer, state, nodes, output, (BATCH, out_features))


@imports("BatchNormalization")
def batch_norm(g: Graph, node: Any, shape: Shape) -> Step:
    a = g.attributes(
        node,
        {
            "epsilon": (FLOAT, 1e-5),
            "momentum": (FLOAT, 0.9),
            "spatial": (INT, 1),
            "training_mode": (INT, 0),
            "is_test": (INT, 1),
        },
    )
    if a["epsilon"] < 0:
        raise fail(node, f"epsilon {a['epsilon']} must not be negative")
    if a["training_mode"] or not a["spatial"] or not a["is_test"]:
        raise fail(node, "only inference mode with per-channel statistics is supported")
    g.check_side_outputs(node)
    names = ("weight", "bias", "running_mean", "running_var")
    values = [g.constant(node, i + 1, name) for i, name in enumerate(names)]
    channels = shape[1] if len(shape) > 1 else UNKNOWN
    if any(v is None or v.ndim != 1 or v.dtype.kind != "f" for v in values):
        raise fail(node, "scale, bias, mean and variance must be constant 1-D float arrays")
    count = len(values[0])  # type: ignore[arg-type]
    if any(len(v) != count for v in values) or (isinstance(channels, int) and channels != count):
        raise fail(
            node, f"statistics of sizes {[len(v) for v in values]} for input {shape_text(shape)}"
        )
    kinds = {2: BatchNorm1D, 4: BatchNorm2D}
    if len(shape) not in kinds:
        raise fail(node, f"expects (N, C) or (N, C, H, W) input, got {shape_text(shape)}")
    # ONNX's momentum weighs the old running value; faltung's (PyTorch's) the new batch.
    momentum = float(f"{1 - short_float(a['momentum']):.7g}") if 0 <= a["momentum"] <= 1 else 0.1
    layer = kinds[len(shape)](count, short_float(a["epsilon"]), momentum)
    state = dict(zip(names, values))
    state["num_batches_tracked"] = np.zeros((), np.int64)
    return Step(layer, state, [node], node.output[0], shape)  # type: ignore[arg-type]


@imports("Relu", "Sigmoid", "Tanh", "Identity")
def elementwise(g: Graph, node: Any, shape: Shape) -> Step:
    g.attributes(node, {})
    layer = {"Relu": ReLU, "Sigmoid": Sigmoid, "Tanh": Tanh, "Identity": Identity}[node.op_type]
    return Step(layer(), {}, [node], node.output[0], shape)


@imports("LeakyRelu")
def leaky_relu(g: Graph, node: Any, shape: Shape) -> Step:
    alpha = g.attributes(node, {"alpha": (FLOAT, 0.01)})["alpha"]
    return Step(LeakyReLU(short_float(alpha)), {}, [node], node.output[0], shape)


@imports("Softmax")
def softmax(g: Graph, node: Any, shape: Shape) -> Step:
    # Before opset 13, Softmax flattened everything from `axis` on into one axis.
    axis = g.attributes(node, {"axis": (INT, -1 if g.opset >= 13 else 1)})["axis"]
    rank = len(shape)
    if not -rank <= axis < rank:
        raise fail(node, f"axis {axis} out of range for input {shape_text(shape)}")
    axis %= rank
    if g.opset < 13 and axis != rank - 1:
        raise fail(node, f"opset {g.opset} softmax over axes {axis}.. has no counterpart")
    layer = Softmax(-1 if axis == rank - 1 else axis)
    return Step(layer, {}, [node], node.output[0], shape)


@imports("Dropout")
def dropout(g: Graph, node: Any, shape: Shape) -> Step:
    a = g.attributes(node, {"ratio": (FLOAT, 0.5), "seed": (INT, 0), "is_test": (INT, 1)})
    g.check_side_outputs(node)
    ratio = a["ratio"]
    if len(node.input) > 1 and node.input[1]:
        ratio = scalar(g, node, 1, "ratio")
    if len(node.input) > 2 and node.input[2]:
        training = g.constant(node, 2, "training_mode")
        if training is None or training.size != 1 or bool(training.reshape(())):
            raise fail(node, "only inference mode (training_mode false) is supported")
    if not 0 <= ratio < 1:
        raise fail(node, f"ratio {ratio} must be in [0, 1)")
    return Step(Dropout(short_float(ratio)), {}, [node], node.output[0], shape)
