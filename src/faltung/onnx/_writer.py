"""faltung -> ONNX: one small function per layer type, each emitting standard operators."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._atomic import atomic_write
from ..functional.shapes import resolve_padding
from ..layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Identity,
    Layer,
    LeakyReLU,
    LpPool2D,
    MaxPool2D,
    ReLU,
    Residual,
    Sigmoid,
    Softmax,
    SyncBatchNorm1D,
    SyncBatchNorm2D,
    Tanh,
)
from ..model import Sequential
from ..summary import dry_run
from .errors import OnnxExportError, require_onnx

IR_VERSION = 8  # the IR of ONNX 1.12, where opset 17 appeared: readable by older runtimes
INPUT_NAME, OUTPUT_NAME = "input", "output"
# What faltung's data pipeline does to an image before the first layer, written into
# models trained by ``faltung train`` so that other runtimes can feed them correctly:
# 8-bit pixels times ``scale``, then (x - mean) / std per channel when the model records a
# standardisation (datasets.preprocess); NCHW, in the model's float type.
PIPELINE_PREPROCESSING = {"scale": 1 / 255, "layout": "NCHW"}


class GraphBuilder:
    """Collects nodes and initializers; names tensors after the layer that makes them."""

    def __init__(self, dtype: np.dtype) -> None:
        self.onnx = require_onnx()
        self.dtype = dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def constant(self, name: str, value: np.ndarray | float) -> str:
        array = np.asarray(value, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, output: str, **attrs: Any) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


# (graph, layer name, layer, input tensor) -> output tensor. Each layer type registers its
# function here; it may emit any number of nodes (a residual block: both branches, an Add).
Emitter = Callable[[GraphBuilder, str, Any, str], str]
EMITTERS: dict[type[Layer], Emitter] = {}


def emits(*types: type[Layer]) -> Callable[[Emitter], Emitter]:
    def register(function: Emitter) -> Emitter:
        for layer_type in types:
            EMITTERS[layer_type] = function
        return function

    return register


def _onnx_pads(padding: tuple[tuple[int, int], tuple[int, int]]) -> list[int]:
    (top, bottom), (left, right) = padding
    return [top, left, bottom, right]  # ONNX: all begins, then all ends


@emits(Conv2D)
def _conv(g: GraphBuilder, name: str, layer: Conv2D, x: str) -> str:
    inputs = [x, g.constant(f"{name}.weight", layer.params["weight"])]
    if layer.has_bias:
        inputs.append(g.constant(f"{name}.bias", layer.params["bias"]))
    return g.node(
        "Conv",
        inputs,
        name,
        f"{name}.out",
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.stride),
        pads=_onnx_pads(
            resolve_padding(layer.padding, layer.kernel_size, layer.dilation, layer.stride)
        ),
        dilations=list(layer.dilation),
        group=layer.groups,
    )


@emits(Dense)
def _dense(g: GraphBuilder, name: str, layer: Dense, x: str) -> str:
    inputs = [x, g.constant(f"{name}.weight", layer.params["weight"])]
    if layer.has_bias:
        inputs.append(g.constant(f"{name}.bias", layer.params["bias"]))
    return g.node("Gemm", inputs, name, f"{name}.out", transB=1)


@emits(Flatten)
def _flatten(g: GraphBuilder, name: str, layer: Flatten, x: str) -> str:
    return g.node("Flatten", [x], name, f"{name}.out", axis=1)


def _window(layer: MaxPool2D | AvgPool2D | LpPool2D) -> dict[str, Any]:
    ph, pw = layer.padding
    return {
        "kernel_shape": list(layer.kernel_size),
        "strides": list(layer.stride),
        "pads": [ph, pw, ph, pw],
        "ceil_mode": 0,
    }


@emits(MaxPool2D)
def _max_pool(g: GraphBuilder, name: str, layer: MaxPool2D, x: str) -> str:
    return g.node("MaxPool", [x], name, f"{name}.out", **_window(layer))


@emits(AvgPool2D)
def _avg_pool(g: GraphBuilder, name: str, layer: AvgPool2D, x: str) -> str:
    # Zero padding counts towards the mean, as in faltung and PyTorch's default.
    return g.node("AveragePool", [x], name, f"{name}.out", count_include_pad=1, **_window(layer))


@emits(LpPool2D)
def _lp_pool(g: GraphBuilder, name: str, layer: LpPool2D, x: str) -> str:
    """The article's u = ((1/k) sum z^P)^(1/P), written out; ONNX's LpPool lacks the 1/k.

    Integer P keeps the sign of z^P (odd P), other P use |z|^P, as faltung does; p=1 and
    p=inf are exactly average and max pooling. An odd P can make the mean negative, so its
    root is taken as sign(m) |m|^(1/P); otherwise the mean is never negative.
    """
    p = layer.p
    if math.isinf(p):
        return _max_pool(g, name, layer, x)
    if p == 1:
        return _avg_pool(g, name, layer, x)
    integer = float(p).is_integer()
    if not integer:
        x = g.node("Abs", [x], f"{name}/abs", f"{name}.abs")
    z = g.node("Pow", [x, g.constant(f"{name}.p", p)], f"{name}/pow", f"{name}.pow")
    m = g.node(
        "AveragePool", [z], f"{name}/mean", f"{name}.mean", count_include_pad=1, **_window(layer)
    )
    inverse = g.constant(f"{name}.inv_p", 1.0 / p)
    if not (integer and int(p) % 2 == 1):
        return g.node("Pow", [m, inverse], name, f"{name}.out")
    sign = g.node("Sign", [m], f"{name}/sign", f"{name}.sign")
    size = g.node("Abs", [m], f"{name}/abs", f"{name}.abs")
    root = g.node("Pow", [size, inverse], f"{name}/root", f"{name}.root")
    return g.node("Mul", [sign, root], name, f"{name}.out")


@emits(GlobalAvgPool2D)
def _global_avg_pool(g: GraphBuilder, name: str, layer: GlobalAvgPool2D, x: str) -> str:
    # GlobalAveragePool keeps (N, C, 1, 1); faltung's layer returns (N, C).
    y = g.node("GlobalAveragePool", [x], f"{name}/pool", f"{name}.pool")
    return g.node("Flatten", [y], name, f"{name}.out", axis=1)


@emits(ReLU, Sigmoid, Tanh, Identity)
def _elementwise(g: GraphBuilder, name: str, layer: Layer, x: str) -> str:
    op = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh", Identity: "Identity"}[type(layer)]
    return g.node(op, [x], name, f"{name}.out")


@emits(LeakyReLU)
def _leaky_relu(g: GraphBuilder, name: str, layer: LeakyReLU, x: str) -> str:
    return g.node("LeakyRelu", [x], name, f"{name}.out", alpha=layer.negative_slope)


@emits(Softmax)
def _softmax(g: GraphBuilder, name: str, layer: Softmax, x: str) -> str:
    return g.node("Softmax", [x], name, f"{name}.out", axis=layer.axis)


@emits(Dropout)
def _dropout(g: GraphBuilder, name: str, layer: Dropout, x: str) -> str:
    # Without training_mode ONNX's Dropout is the identity; the ratio keeps p for the record.
    return g.node("Dropout", [x, g.constant(f"{name}.ratio", layer.p)], name, f"{name}.out")


# Synchronised batch norm differs only in training; at inference it is plain batch norm.
@emits(BatchNorm1D, BatchNorm2D, SyncBatchNorm1D, SyncBatchNorm2D)
def _batch_norm(g: GraphBuilder, name: str, layer: BatchNorm1D | BatchNorm2D, x: str) -> str:
    c = layer.num_features
    scale = layer.params["weight"] if layer.affine else np.ones(c)
    shift = layer.params["bias"] if layer.affine else np.zeros(c)
    inputs = [
        x,
        g.constant(f"{name}.weight", scale),
        g.constant(f"{name}.bias", shift),
        g.constant(f"{name}.running_mean", layer.buffers["running_mean"]),
        g.constant(f"{name}.running_var", layer.buffers["running_var"]),
    ]
    # ONNX's momentum weighs the old running value: 1 - PyTorch's (and faltung's) momentum.
    # It has no cumulative average (momentum None): that takes ONNX's default, which only
    # training in another runtime would read.
    attributes = {} if layer.momentum is None else {"momentum": 1.0 - layer.momentum}
    return g.node(
        "BatchNormalization", inputs, name, f"{name}.out", epsilon=layer.eps, **attributes
    )


def _emit_chain(g: GraphBuilder, prefix: str, layers: dict[str, Layer], x: str) -> str:
    for name, layer in layers.items():
        emitter = EMITTERS.get(type(layer))
        if emitter is None:
            raise OnnxExportError(
                f"layer {prefix + name!r} ({type(layer).__name__}) has no ONNX export; "
                f"supported: {', '.join(sorted(t.__name__ for t in EMITTERS))}"
            )
        x = emitter(g, prefix + name, layer, x)
    return x


@emits(Residual)
def _residual(g: GraphBuilder, name: str, layer: Residual, x: str) -> str:
    """body(x) + shortcut(x): both branches read the block's input, an Add joins them."""
    body = _emit_chain(g, f"{name}.body.", layer.body.layers, x)
    shortcut = (
        x
        if layer.shortcut is None
        else _emit_chain(g, f"{name}.shortcut.", layer.shortcut.layers, x)
    )
    return g.node("Add", [body, shortcut], name, f"{name}.out")


def default_input_shape(model: Sequential) -> tuple[int | str, ...]:
    """One example's shape as far as the first layer fixes it; the rest stays symbolic."""
    first = next(iter(model.layers.values()))
    if isinstance(first, Conv2D):
        return (first.in_channels, "H", "W")
    if isinstance(first, (BatchNorm2D, SyncBatchNorm2D)):
        return (first.num_features, "H", "W")
    if isinstance(first, Dense):
        return (first.in_features,)
    if isinstance(first, (BatchNorm1D, SyncBatchNorm1D)):
        return (first.num_features,)
    raise OnnxExportError(
        f"cannot tell the input shape from the first layer ({type(first).__name__}); "
        "pass input_shape=(C, H, W)"
    )


def output_shape(model: Sequential, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """One example's output shape, from a forward pass of one zero input."""
    try:
        *_, (_, _, y) = dry_run(model, input_shape)
    except ValueError as error:
        raise OnnxExportError(
            f"the model does not accept input shape {input_shape}: {error}"
        ) from None
    except MemoryError:
        raise OnnxExportError(f"input shape {input_shape} is too large to run") from None
    return y.shape[1:]


def symbolic_output(model: Sequential, rank: int) -> list[int | str]:
    """The output's dimensions when the input's spatial size is left open."""
    return _symbolic_dims(model.layers.values(), ["N", *(f"d{i}" for i in range(1, rank))])


def _symbolic_dims(layers: Iterable[Layer], dims: list[int | str]) -> list[int | str]:
    for layer in layers:
        if isinstance(layer, Residual):  # the body's output is the block's
            dims = _symbolic_dims(layer.body.layers.values(), dims)
        elif isinstance(layer, Dense):
            dims = ["N", layer.out_features]
        elif isinstance(layer, GlobalAvgPool2D):
            dims = dims[:2]
        elif isinstance(layer, Flatten):
            dims = ["N", "features"]
        elif isinstance(layer, Conv2D) and len(dims) == 4:
            dims = ["N", layer.out_channels, "h", "w"]
    return dims


def build_model_proto(
    model: Sequential,
    input_shape: tuple[int, ...] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """The ONNX ModelProto of ``model``; see :func:`faltung.onnx.export`."""
    onnx = require_onnx()
    from . import OPSET

    metadata = dict(metadata or {})
    dtype = model.dtype
    element = {
        np.dtype(np.float32): onnx.TensorProto.FLOAT,
        np.dtype(np.float64): onnx.TensorProto.DOUBLE,
    }
    if dtype not in element:
        raise OnnxExportError(f"cannot export {dtype} weights; use float32 or float64")
    if input_shape is None and metadata.get("input_shape") is not None:
        input_shape = tuple(metadata["input_shape"])
    shape: tuple[int | str, ...] = (
        default_input_shape(model) if input_shape is None else tuple(int(d) for d in input_shape)
    )
    if all(isinstance(d, int) for d in shape):
        output_dims: list[int | str] = ["N", *output_shape(model, shape)]  # type: ignore[arg-type]
        if "input_shape" in metadata:  # the shape exported, if another was given
            metadata["input_shape"] = list(shape)
    else:
        output_dims = symbolic_output(model, len(shape) + 1)

    g = GraphBuilder(dtype)
    _emit_chain(g, "", model.layers, INPUT_NAME)
    last = g.nodes[-1]
    last.output[0] = OUTPUT_NAME

    helper = onnx.helper
    graph = helper.make_graph(
        g.nodes,
        "faltung",
        [helper.make_tensor_value_info(INPUT_NAME, element[dtype], ["N", *shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, element[dtype], output_dims)],
        initializer=g.initializers,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="faltung",
        producer_version=__version__,
        ir_version=IR_VERSION,
    )
    props = metadata_props(metadata, shape, dtype)
    helper.set_model_props(proto, props)
    return proto


def metadata_props(
    metadata: dict[str, Any], shape: tuple[int | str, ...], dtype: np.dtype
) -> dict[str, str]:
    """String key/value pairs: the common keys for other tools, the whole record as JSON."""
    props = {"input_shape": json.dumps(list(shape))}
    if metadata.get("classes") is not None:
        props["class_names"] = json.dumps(list(metadata["classes"]))
    standardisation = metadata.get("preprocessing")
    if standardisation is not None or "dataset" in metadata:
        pipeline = {**PIPELINE_PREPROCESSING, "dtype": np.dtype(dtype).name}
        props["preprocessing"] = json.dumps({**pipeline, **(standardisation or {})})
    if metadata:
        props["faltung.metadata"] = json.dumps(metadata)
    return props


def write_model(
    model: Sequential,
    path: str | os.PathLike[str],
    *,
    input_shape: tuple[int, ...] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    proto = build_model_proto(model, input_shape, metadata)
    target = Path(path)
    with atomic_write(target) as handle:
        handle.write(proto.SerializeToString())
    return target
