"""Pooling nodes -> faltung's pooling layers, including the Lp pooling pattern faltung writes."""

from __future__ import annotations

import math
from typing import Any

from ..layers import AvgPool2D, GlobalAvgPool2D, LpPool2D, MaxPool2D
from ._graph import INT, INTS, STRING, Graph, Shape, Symbol, axes_of, fail
from ._ops import (
    IMPORTERS,
    Step,
    check_fits,
    imports,
    out_size,
    pads_of,
    pair_attr,
    scalar,
    short_float,
    spatial,
)


def _window(g: Graph, node: Any, shape: Shape, extra: dict[str, Any]) -> tuple[Any, ...]:
    """(kernel, stride, padding, output shape) of a pooling node, or why it has no match."""
    a = g.attributes(
        node,
        {
            "kernel_shape": (INTS, None),
            "strides": (INTS, None),
            "pads": (INTS, None),
            "ceil_mode": (INT, 0),
            "auto_pad": (STRING, "NOTSET"),
            "dilations": (INTS, None),
            **extra,
        },
    )
    hw = spatial(node, shape)
    if a["kernel_shape"] is None:
        raise fail(node, "has no kernel_shape")
    kernel = pair_attr(node, a["kernel_shape"], 0, "kernel_shape")
    stride = pair_attr(node, a["strides"], 1, "strides")  # ONNX's default stride is 1
    if pair_attr(node, a["dilations"], 1, "dilations") != (1, 1):
        raise fail(node, "dilated pooling is not supported")
    if min(kernel) < 1 or min(stride) < 1:
        raise fail(node, "kernel_shape and strides must be positive")
    top, left, bottom, right = pads_of(node, a, kernel, stride, (1, 1), hw)
    if (top, left) != (bottom, right):
        raise fail(node, f"asymmetric padding {[top, left, bottom, right]} is not supported")
    if 2 * top > kernel[0] or 2 * left > kernel[1]:
        raise fail(node, f"padding {[top, left]} exceeds half the kernel {list(kernel)}")
    pads = ((top, top), (left, left))
    out_hw = tuple(out_size(s, k, st, p) for s, k, st, p in zip(hw, kernel, stride, pads))
    check_fits(node, out_hw, hw)  # type: ignore[arg-type]
    if a["ceil_mode"]:
        # Rounding up adds a last, partial window exactly where floor and ceil differ.
        for size, k, st, p, o in zip(hw, kernel, stride, pads, out_hw):
            if isinstance(size, Symbol):
                raise fail(node, "ceil_mode=1 is not supported for an input of unknown size")
            if math.ceil((size + sum(p) - k) / st) + 1 != o:
                raise fail(node, "ceil_mode=1 adds a partial window here; faltung rounds down only")
    return kernel, stride, (top, left), (*shape[:2], *out_hw), a


@imports("MaxPool")
def max_pool(g: Graph, node: Any, shape: Shape) -> Step:
    kernel, stride, padding, out, _ = _window(g, node, shape, {"storage_order": (INT, 0)})
    g.check_side_outputs(node)
    return Step(MaxPool2D(kernel, stride, padding), {}, [node], node.output[0], out)


def _average_window(g: Graph, node: Any, shape: Shape) -> tuple[Any, ...]:
    kernel, stride, padding, out, a = _window(g, node, shape, {"count_include_pad": (INT, 0)})
    if padding != (0, 0) and not a["count_include_pad"]:
        raise fail(
            node,
            "count_include_pad=0 averages only the real pixels; faltung's AvgPool2D counts "
            "the zero padding (PyTorch's default)",
        )
    return kernel, stride, padding, out


@imports("AveragePool")
def average_pool(g: Graph, node: Any, shape: Shape) -> Step:
    kernel, stride, padding, out = _average_window(g, node, shape)
    return Step(AvgPool2D(kernel, stride, padding), {}, [node], node.output[0], out)


@imports("LpPool")
def lp_pool(g: Graph, node: Any, shape: Shape) -> Step:
    raise fail(
        node,
        "ONNX LpPool is the plain p-norm (sum |x|^p)^(1/p); faltung's LpPool2D is the "
        "article's mean form ((1/k) sum z^p)^(1/p), so there is no exact counterpart",
    )


@imports("Abs", "Pow")
def power_pool(g: Graph, node: Any, shape: Shape) -> Step:
    """The article's Lp pooling as faltung exports it: [Abs] -> Pow(P) -> AveragePool ->
    Pow(1/P), or for odd P the signed root Sign(m) * Pow(Abs(m), 1/P)."""
    pattern = "Pow(x, P) -> AveragePool -> Pow(1/P) (faltung's LpPool2D)"
    nodes, pow_node = [node], node
    if node.op_type == "Abs":
        pow_node = g.only_user(node, node.output[0], ("Pow",))
        if pow_node is None:
            raise fail(node, f"Abs is supported only as the start of the pattern {pattern}")
        nodes.append(pow_node)
    p = scalar(g, pow_node, 1, "exponent")
    mean = g.only_user(pow_node, pow_node.output[0], ("AveragePool",))
    if mean is None or not p > 0:
        raise fail(node, f"{node.op_type} is supported only as part of the pattern {pattern}")
    kernel, stride, padding, out = _average_window(g, mean, shape)
    nodes.append(mean)
    m = mean.output[0]
    users = sorted(g.users(m), key=lambda n: n.op_type)
    signed = [u.op_type for u in users] == ["Abs", "Sign"]
    root_input = users[0].output[0] if signed else m
    root = g.only_user(mean, root_input, ("Pow",))
    if not signed and len(users) != 1:
        root = None
    if root is None or abs(scalar(g, root, 1, "exponent") * p - 1) > 1e-6:
        raise fail(node, f"{node.op_type} is supported only as part of the pattern {pattern}")
    nodes.append(root)
    output = root.output[0]
    if signed:
        product = g.only_user(root, output, ("Mul",))
        if product is None or set(product.input) != {users[1].output[0], output}:
            raise fail(node, "the signed root must end in Mul(Sign(m), Pow(Abs(m), 1/P))")
        nodes += users + [product]
        output = product.output[0]
    integer = float(p).is_integer()
    odd = integer and int(p) % 2 == 1
    takes_abs = node.op_type == "Abs"
    # faltung: z^P keeps the sign for integer P, |z|^P otherwise; the root keeps the sign.
    if (takes_abs and odd) or (not takes_abs and not integer) or (odd and not signed):
        raise fail(node, f"this Lp pooling with P={p:g} differs from faltung's for negative input")
    layer = LpPool2D(short_float(p), kernel, stride, padding)
    return Step(layer, {}, nodes, output, out)


@imports("GlobalAveragePool", "ReduceMean")
def global_average_pool(g: Graph, node: Any, shape: Shape) -> Step:
    """GlobalAveragePool (or a ReduceMean over H and W) keeps (N, C, 1, 1); faltung's
    GlobalAvgPool2D gives (N, C), so the Flatten, Reshape or Squeeze that exporters put
    after it becomes part of the layer."""
    spatial(node, shape)
    if node.op_type == "ReduceMean":
        allowed = {"axes": (INTS, None), "keepdims": (INT, 1), "noop_with_empty_axes": (INT, 0)}
        a = g.attributes(node, allowed)
        axes = a["axes"] if a["axes"] is not None else _integers_or_fail(g, node)
        if sorted(axis % 4 for axis in axes) != [2, 3]:
            raise fail(node, "only a mean over both spatial axes (global pooling) is supported")
        if not a["keepdims"]:
            return Step(GlobalAvgPool2D(), {}, [node], node.output[0], tuple(shape[:2]))
    else:
        g.attributes(node, {})
    follower = g.only_user(node, node.output[0], ("Flatten", "Reshape", "Squeeze"))
    if follower is None:
        raise fail(node, "is supported only when followed by Flatten, Reshape or Squeeze to (N, C)")
    pooled = (*shape[:2], 1, 1)
    g.shapes[node.output[0]] = pooled  # for a Shape beside the follower (x.view(x.size(0), -1))
    if follower.op_type == "Squeeze":
        followers = _squeezes_to_channels(g, follower)
    else:
        IMPORTERS[follower.op_type](g, follower, pooled)  # checks it flattens to (N, C)
        followers = [follower]
    return Step(
        GlobalAvgPool2D(), {}, [node, *followers], followers[-1].output[0], tuple(shape[:2])
    )


def _squeezes_to_channels(g: Graph, first: Any) -> list[Any]:
    """The Squeeze nodes after global pooling that drop axes 2 and 3 between them: one of
    both, or PyTorch's ``x.squeeze(-1).squeeze(-1)``, each axis counted in its own input."""
    left, squeezes, node = [0, 1, 2, 3], [], first  # the pooled tensor's axes still there
    while node is not None:
        dropped = {left[a % len(left)] for a in axes_of(g, node, g.inputs_known(node))}
        if not dropped <= {2, 3}:
            break
        left = [axis for axis in left if axis not in dropped]
        squeezes.append(node)
        if left == [0, 1]:
            return squeezes
        node = g.only_user(node, node.output[0], ("Squeeze",))
    raise fail(first, "only squeezing axes 2 and 3 after global pooling is supported")


def _integers_or_fail(g: Graph, node: Any) -> list[int]:
    axes = g.constant(node, 1, "axes")
    if axes is None or axes.dtype.kind not in "iu" or axes.ndim != 1:
        raise fail(node, "needs constant integer axes")
    return [int(v) for v in axes]
