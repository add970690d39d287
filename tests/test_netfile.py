"""Networks described in TOML or JSON: the Python names, nested blocks, errors naming the layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faltung.netfile import check_shapes, read_network

NET = {
    "input_shape": [1, 12, 12],
    "layers": [
        {"name": "conv1", "type": "Conv2D", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
        {"name": "relu1", "type": "ReLU"},
        {
            "name": "block",
            "type": "Residual",
            "body": [
                {"name": "conv", "type": "Conv2D", "args": {"in_channels": 4, "out_channels": 8,
                 "kernel_size": 3, "stride": 2, "padding": 1, "bias": False}},
                {"name": "bn", "type": "BatchNorm2D", "num_features": 8},
            ],
            "shortcut": [{"name": "proj", "type": "Conv2D", "in_channels": 4, "out_channels": 8,
                          "kernel_size": 1, "stride": 2}],
        },
        {"name": "pool", "type": "GlobalAvgPool2D"},
        {"name": "fc1", "type": "Dense", "in_features": 8, "out_features": 3},
    ],
}  # fmt: skip

TOML = """
input_shape = [1, 28, 28]
[[layers]]
name = "conv1"
type = "Conv2D"
in_channels = 1
out_channels = 50
kernel_size = 5
stride = 2
[[layers]]
name = "flatten"
type = "Flatten"
[[layers]]
name = "fc1"
type = "Dense"
in_features = 800
out_features = 10
"""


def test_json_network_with_a_residual_block(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(NET))
    model, shape = read_network(path)
    assert shape == (1, 12, 12)
    assert "block.shortcut.proj.weight" in model.state_dict()
    assert model(np.zeros((2, 1, 12, 12), np.float32)).shape == (2, 3)
    again, _ = read_network(path)
    for p, q in zip(model.parameters(), again.parameters()):
        np.testing.assert_array_equal(p.value, q.value)  # seeded


def test_toml_shapes_that_do_not_fit_name_the_layer(tmp_path):
    pytest.importorskip("tomllib")
    path = tmp_path / "net.toml"
    path.write_text(TOML)
    with pytest.raises(
        ValueError, match=r"fc1 \(Dense\): expected 800 input features, got shape \(1, 7200\)"
    ):
        read_network(path)
    path.write_text(TOML.replace("in_features = 800", "in_features = 7200"))
    model, _ = read_network(path)
    check_shapes(model, (1, 28, 28), path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "Conv3D"}, "conv1: unknown layer type 'Conv3D'"),
        ({"kernel": 3}, "conv1: Conv2D got an unexpected keyword argument 'kernel'"),
        ({"out_channels": 0}, "conv1: out_channels must be positive"),
        ({"type": ["Conv2D"]}, r"conv1: 'type' must be a layer's class name, got \['Conv2D'\]"),
        ({"args": 5}, "conv1: 'args' must be a table of arguments, got 5"),
        ({"args": [1, 2]}, r"conv1: 'args' must be a table of arguments, got \[1, 2\]"),
        ({"in_channels": "one"}, "conv1: Conv2D's in_channels must be an integer, got 'one'"),
        ({"in_channels": True}, "conv1: Conv2D's in_channels must be an integer, got True"),
        ({"bias": "no"}, "conv1: Conv2D's bias must be true or false, got 'no'"),
        ({"kernel_size": [3, "3"]}, "kernel_size must be an integer or a list of integers"),
        ({"padding": 1.5}, "padding must be an integer or a list of integers or a string"),
        ({"dtype": "float64"}, "conv1: every layer of a network file takes the model's dtype"),
    ],
)
def test_layer_errors_name_layer_and_field(tmp_path, change, message):
    net = json.loads(json.dumps(NET))
    net["layers"][0].update(change)
    path = tmp_path / "net.json"
    path.write_text(json.dumps(net))
    with pytest.raises(ValueError, match=message):
        read_network(path)


def test_nested_errors_and_bad_files(tmp_path):
    net = json.loads(json.dumps(NET))
    net["layers"][2]["body"][1]["num_features"] = 5
    path = tmp_path / "net.json"
    path.write_text(json.dumps(net))
    with pytest.raises(
        ValueError, match=r"block.body.bn \(BatchNorm2D\): expected 5 input channels"
    ):
        read_network(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_network(path)
    path.write_text(json.dumps({"layers": []}))
    with pytest.raises(ValueError, match="expected a list 'layers'"):
        read_network(path)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            {"type": "LeakyReLU", "negative_slope": "x"},
            "LeakyReLU's negative_slope must be a number",
        ),
        ({"type": "LpPool2D", "p": "abc", "kernel_size": 2}, "LpPool2D's p must be a number"),
        ({"type": "Residual", "body": "conv"}, "body must be a list of layer tables, got 'conv'"),
        ({"type": "SyncBatchNorm2D", "num_features": 1, "affine": "no"}, "affine must be true"),
        ({"type": "Dropout", "p": "inf"}, "Dropout's p must be a number, got 'inf'"),
        ({"type": "SyncBatchNorm2D", "num_features": 1, "process_group": "x"}, "must be null"),
        ({"type": "BatchNorm2D", "num_features": 1, "eps": 0}, "eps must be positive and finite"),
    ],
)
def test_argument_types_are_checked_and_name_the_layer(tmp_path, layer, message):
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"layers": [{"name": "odd", **layer}]}))
    with pytest.raises(ValueError, match=f"net.json: odd: .*{message}"):
        read_network(path)


def test_linear_is_dense_and_p_may_be_inf(tmp_path):
    path = tmp_path / "net.json"
    layers = [
        {"name": "pool", "type": "LpPool2D", "p": "inf", "kernel_size": 2},
        {"name": "flat", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "in_features": 4, "out_features": 2},
    ]
    path.write_text(json.dumps({"layers": layers, "input_shape": [1, 4, 4]}))
    model, _ = read_network(path)
    assert type(model["fc"]).__name__ == "Dense" and model["pool"].p == float("inf")


def test_a_layer_too_large_for_memory_is_one_error_naming_it(tmp_path, monkeypatch):
    from faltung.layers import Dense

    def no_memory(self, rng):  # what NumPy raises; not a real 4 TB allocation
        raise MemoryError("Unable to allocate 3.64 TiB")

    monkeypatch.setattr(Dense, "reset_parameters", no_memory)
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"layers": [{"name": "big", "type": "Dense", "in_features": 10**6,
                                            "out_features": 10**6}]}))  # fmt: skip
    with pytest.raises(ValueError, match="big: Dense's parameters do not fit in memory"):
        read_network(path)


def test_a_byte_order_mark_is_not_part_of_the_file(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(NET), encoding="utf-8-sig")
    model, shape = read_network(path)
    assert shape == (1, 12, 12) and "block" in model.layers
