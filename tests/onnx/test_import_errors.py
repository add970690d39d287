"""Files faltung cannot represent, malformed files and hostile files: one clear error each,
never a crash, never a half-built model, never a read outside the model's directory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faltung import Sequential
from faltung.io import ModelFileError
from faltung.layers import BatchNorm2D, Conv2D, Dense, Flatten, LpPool2D, MaxPool2D, ReLU

onnx = pytest.importorskip("onnx")
import faltung.onnx as fonnx  # noqa: E402

from .helpers import run_onnxruntime  # noqa: E402

helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto


def graph_file(path, nodes, initializers=(), shape=(1, 1, 6, 6), output="y", opset=17):
    """A one-input, one-output float model built by hand."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])
    y = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    tensors = [numpy_helper.from_array(np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f"
               else np.int64), name) for name, v in initializers]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path.write_bytes(model.SerializeToString())
    return path


def refused(path, message):
    with pytest.raises(fonnx.OnnxImportError, match=message) as error:
        fonnx.load(path)
    assert isinstance(error.value, ModelFileError)
    assert "\n" not in str(error.value)


CONV_W = ("w", np.ones((2, 1, 3, 3), np.float32))


@pytest.mark.parametrize(
    ("nodes", "initializers", "message"),
    [
        ([helper.make_node("Transpose", ["x"], ["y"], name="t1")], [],
         r"node 't1' \(Transpose\): operator not supported"),
        ([helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], strides=[2, 2],
                           ceil_mode=1, pads=[0, 0, 0, 0])], [],
         r"node 'p' \(MaxPool\): ceil_mode=1"),
        ([helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2],
                           pads=[1, 1, 0, 0])], [], r"'p' \(MaxPool\): asymmetric padding"),
        ([helper.make_node("AveragePool", ["x"], ["y"], name="a", kernel_shape=[3, 3],
                           pads=[1, 1, 1, 1])], [], r"'a' \(AveragePool\): count_include_pad=0"),
        ([helper.make_node("LpPool", ["x"], ["y"], name="l", kernel_shape=[2, 2], p=2)], [],
         r"'l' \(LpPool\): ONNX LpPool is the plain p-norm"),
        ([helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[0, 0, 1, 1], strides=[2, 2])],
         [CONV_W], r"'c' \(Conv\): asymmetric padding \[0, 0, 1, 1\]"),
        ([helper.make_node("Conv", ["x", "w"], ["y"], name="c", foo=3)], [CONV_W],
         r"'c' \(Conv\): attribute 'foo' is not supported"),
        ([helper.make_node("Relu", ["x"], ["r"], name="r1"), helper.make_node("Relu", ["x"], ["y"])],
         [], r"'r' leads nowhere"),
        ([helper.make_node("Relu", ["x"], ["a"], name="relu"),
          helper.make_node("Sigmoid", ["x"], ["b"]),
          helper.make_node("Add", ["a", "k"], ["y"], name="add1"),
          helper.make_node("Add", ["b", "k"], ["z"], name="add2")],
         [("k", np.ones(1, np.float32))],
         r"tensor 'x' starts branches that meet in no residual Add \(node 'relu"),
        ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "b"], ["y"], name="add")],
         [("b", np.ones(1, np.float32))], r"'add' \(Add\): an Add outside a residual block"),
        ([helper.make_node("Conv", ["x", "x"], ["y"], name="c")], [],
         r"'c' \(Conv\): its weight \('x'\) is computed in the graph"),
        ([helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example")], [],
         r"'r' \(Relu\): operator of domain 'com.example'"),
        ([helper.make_node("Relu", ["x"], ["z"], name="r")], [], r"'z' leads nowhere"),
        ([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["q"], ["q2"], name="s")],
         [], r"'s' \(Sigmoid\): is not part of the chain"),
        ([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], [("s", np.array([-1, 6]))],
         r"'rs' \(Reshape\): only a Reshape that flattens"),
        ([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)], [],
         r"Softmax.*opset 11 softmax over axes 1"),
    ],
    ids=["unsupported-op", "ceil-mode", "pool-asymmetric", "count-include-pad", "lppool",
         "conv-asymmetric", "unknown-attribute", "branch", "unpaired-branches", "add-alone",
         "computed-weight", "custom-domain", "dead-end", "stray-node", "reshape-batch",
         "old-softmax"],
)  # fmt: skip
def test_what_faltung_cannot_represent_is_refused_by_node(tmp_path, nodes, initializers, message):
    opset = 11 if nodes[0].op_type == "Softmax" else 17
    # 7x7: 2x2 pooling in ceil mode would add a partial last window.
    refused(
        graph_file(tmp_path / "m.onnx", nodes, initializers, (1, 1, 7, 7), opset=opset), message
    )


def test_ceil_mode_without_a_partial_window_is_accepted(tmp_path):
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1
    )
    model, _ = fonnx.load(graph_file(tmp_path / "m.onnx", [node], shape=(1, 1, 6, 6)))
    assert isinstance(model[0], MaxPool2D)


def test_a_cast_shape_and_a_weight_through_identity_are_folded(tmp_path):
    """PyTorch's opset 7 writes view(-1, K)'s shape as a double Constant cast to int64;
    some tools pass weights through Identity or Cast nodes."""
    pytest.importorskip("onnxruntime")
    shape = numpy_helper.from_array(np.array([-1.0, 32.0]), "s")
    nodes = [
        helper.make_node("Identity", ["w"], ["w2"]),
        helper.make_node("Cast", ["w2"], ["w3"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w3"], ["c"]),
        helper.make_node("Constant", [], ["sd"], value=shape),
        helper.make_node("Cast", ["sd"], ["si"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["c", "si"], ["y"]),
    ]
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(8, 1, 3, 3)).astype(np.float32)  # more than a shape's 64 values
    path = graph_file(tmp_path / "m.onnx", nodes, [("w", weight)], (1, 1, 4, 4))
    model, _ = fonnx.load(path)
    assert [type(layer).__name__ for layer in model] == ["Conv2D", "Flatten"]
    x = rng.random((2, 1, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(model(x), run_onnxruntime(path, x), rtol=1e-5, atol=1e-6)


def test_a_failure_late_in_the_graph_builds_nothing(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(Sequential, "__init__", lambda self, *a, **k: built.append(a))
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Erf", ["r"], ["y"], name="e"),
    ]
    refused(graph_file(tmp_path / "m.onnx", nodes), r"'e' \(Erf\)")
    assert built == []


def saved_model(directory, external: bool = False):
    model = Sequential([Conv2D(1, 3, 3), BatchNorm2D(3), ReLU(), LpPool2D(3, 2), Flatten(),
                        Dense(3 * 2 * 2, 4)], seed=0).eval()  # fmt: skip
    path = fonnx.export(model, directory / "m.onnx", input_shape=(1, 6, 6))
    if external:
        proto = onnx.load(str(path))
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)  # fmt: skip
    return model, path


def test_external_data_beside_the_file_is_read(tmp_path):
    model, path = saved_model(tmp_path, external=True)
    assert (tmp_path / "weights.bin").stat().st_size > 0
    loaded, _ = fonnx.load(path)
    x = np.random.default_rng(0).normal(size=(3, 1, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize(
    ("location", "message"),
    [("../outside.bin", "leaves the directory"), ("/etc/passwd", "is not relative"),
     ("missing.bin", "is missing"), ("short.bin", "too short|expected")],
)  # fmt: skip
def test_external_data_must_stay_beside_the_file(tmp_path, location, message):
    _, path = saved_model(tmp_path, external=True)
    (tmp_path / "short.bin").write_bytes(b"\0" * 8)
    (tmp_path.parent / "outside.bin").write_bytes((tmp_path / "weights.bin").read_bytes())
    proto = onnx.load(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(proto.SerializeToString())
    refused(path, message)


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory) -> bytes:
    _, path = saved_model(tmp_path_factory.mktemp("valid"))
    return path.read_bytes()


def load_bytes(tmp_path, data: bytes):
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(data)
    try:
        fonnx.load(path)
    except ModelFileError:
        pass  # the one acceptable failure; anything else fails the test


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_random_bytes_get_a_model_file_error(tmp_path, data):
    load_bytes(tmp_path, data)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_damaged_files_get_a_model_file_error(tmp_path, valid_bytes, data):
    raw = bytearray(valid_bytes)
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    load_bytes(tmp_path, bytes(raw))


FIELDS = ["dims", "data_type", "raw_data", "attribute", "op_type", "input", "output",
          "opset", "elem_type", "input_dim", "metadata"]  # fmt: skip


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_hostile_structures_get_a_model_file_error(tmp_path, valid_bytes, data):
    """Well-formed protobuf with lying contents: wrong sizes, types, names, attributes."""
    proto = onnx.ModelProto.FromString(valid_bytes)
    graph = proto.graph
    number = st.integers(-(2**62), 2**62)
    for _ in range(data.draw(st.integers(1, 3))):
        field = data.draw(st.sampled_from(FIELDS))
        tensor = graph.initializer[data.draw(st.integers(0, len(graph.initializer) - 1))]
        node = graph.node[data.draw(st.integers(0, len(graph.node) - 1))]
        if field == "dims":
            tensor.dims[:] = data.draw(st.lists(number, max_size=5))
        elif field == "data_type":
            tensor.data_type = data.draw(st.integers(0, 30))
        elif field == "raw_data":
            tensor.raw_data = data.draw(st.binary(max_size=64))
        elif field == "attribute" and len(node.attribute):
            attribute = node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
            if attribute.ints:
                attribute.ints[:] = data.draw(st.lists(number, max_size=5))
            attribute.i = data.draw(number)
            attribute.f = data.draw(st.floats(allow_nan=True, width=32))
        elif field == "op_type":
            node.op_type = data.draw(st.sampled_from(["Relu", "Conv", "Gemm", "MaxPool", "Shape",
                                                      "Reshape", "Pow", "Loop", "If", ""]))  # fmt: skip
        elif field == "input" and len(node.input):
            names = [n for other in graph.node for n in other.output] + ["x", "", "nope"]
            node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(
                st.sampled_from(names)
            )
        elif field == "output":
            node.output[0] = data.draw(st.sampled_from(["x", "output", "conv1.out", "zzz"]))
        elif field == "opset":
            proto.opset_import[0].version = data.draw(st.integers(-5, 40))
        elif field == "elem_type":
            graph.input[0].type.tensor_type.elem_type = data.draw(st.integers(0, 20))
        elif field == "input_dim":
            graph.input[0].type.tensor_type.shape.dim[
                data.draw(st.integers(1, 3))
            ].dim_value = data.draw(number)
        elif field == "metadata":
            proto.metadata_props.add(key="faltung.metadata", value=data.draw(st.text(max_size=30)))
    load_bytes(tmp_path, proto.SerializeToString())


def test_a_deeply_nested_metadata_value_is_ignored(tmp_path, valid_bytes):
    proto = onnx.ModelProto.FromString(valid_bytes)
    proto.metadata_props.add(key="faltung.metadata", value="[" * 100_000)
    path = tmp_path / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    _, metadata = fonnx.load(path)
    assert metadata["input_shape"] == [1, 6, 6]
