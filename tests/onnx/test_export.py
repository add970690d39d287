"""Export: every layer type and the presets, run by onnxruntime, must match faltung."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from faltung import Sequential
from faltung.layers import (
    LAYER_TYPES,
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
from faltung.losses import SoftmaxCrossEntropy
from faltung.optim import Adam
from faltung.presets import PRESETS

from ..synthetic import synthetic_arrays
from .helpers import assert_close, check_file, randomize_statistics, run_onnxruntime

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import faltung.onnx as fonnx  # noqa: E402

# (id, layers, one example's shape). Odd sizes on purpose: windows that leave pixels over.
CASES = [
    ("conv", [Conv2D(2, 3, 3)], (2, 9, 8)),
    ("conv-stride-pad", [Conv2D(2, 4, (3, 2), stride=(2, 1), padding=(1, 2))], (2, 9, 7)),
    ("conv-same-even", [Conv2D(1, 3, 4, padding="same")], (1, 7, 6)),
    ("conv-dilation-groups", [Conv2D(4, 6, 3, dilation=2, groups=2, bias=False)], (4, 11, 9)),
    ("conv-depthwise", [Conv2D(3, 3, 3, groups=3, padding="same")], (3, 6, 6)),
    ("maxpool", [MaxPool2D(2)], (2, 7, 9)),
    ("maxpool-pad-stride", [MaxPool2D(3, 2, 1)], (2, 8, 7)),
    ("avgpool-pad", [AvgPool2D(3, 2, 1)], (2, 8, 7)),
    ("lppool-p1", [LpPool2D(1, 2)], (2, 6, 6)),
    ("lppool-p2", [LpPool2D(2, 2)], (2, 6, 7)),
    ("lppool-p3-signed", [LpPool2D(3, 3, 2, 1)], (2, 7, 7)),
    ("lppool-p2.5", [LpPool2D(2.5, 2, 1)], (2, 5, 6)),
    ("lppool-inf", [LpPool2D(math.inf, 2)], (2, 6, 6)),
    ("global-avg", [GlobalAvgPool2D()], (3, 5, 4)),
    ("flatten-dense", [Flatten(), Dense(2 * 3 * 4, 5)], (2, 3, 4)),
    ("dense-no-bias", [Dense(6, 4, bias=False)], (6,)),
    ("activations-4d", [ReLU(), LeakyReLU(0.2), Sigmoid(), Tanh(), Identity()], (2, 3, 3)),
    ("softmax", [Softmax()], (7,)),
    ("softmax-channels", [Softmax(axis=1)], (4, 3, 2)),
    ("dropout", [Dropout(0.3)], (2, 4, 4)),
    ("batchnorm2d", [BatchNorm2D(3)], (3, 4, 5)),
    ("batchnorm2d-plain", [BatchNorm2D(3, affine=False, eps=1e-3)], (3, 4, 5)),
    ("batchnorm1d", [Dense(5, 4), BatchNorm1D(4)], (5,)),
    ("sync-batchnorm2d", [SyncBatchNorm2D(3)], (3, 4, 5)),
    ("sync-batchnorm1d", [Dense(5, 4), SyncBatchNorm1D(4)], (5,)),
]


def read_back(layer: Layer) -> type[Layer]:
    """The layer type import gives: Lp pooling with p=1 or inf is exported as what it equals."""
    if isinstance(layer, LpPool2D) and layer.p in (1, math.inf):
        return AvgPool2D if layer.p == 1 else MaxPool2D
    if isinstance(layer, (SyncBatchNorm1D, SyncBatchNorm2D)):  # the same at inference
        return BatchNorm1D if isinstance(layer, SyncBatchNorm1D) else BatchNorm2D
    return type(layer)


def build(layers: list[Layer], seed: int = 0) -> Sequential:
    model = Sequential(layers, seed=seed)
    randomize_statistics(model, seed)
    return model.eval()


def inputs(shape: tuple[int, ...], batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)


RESIDUAL_CASES = [
    (
        "residual-identity",
        [Conv2D(2, 3, 3, padding=1), Residual([Conv2D(3, 3, 3, padding=1), ReLU()])],
        (2, 6, 6),
    ),
    (
        "residual-projection",
        [
            Residual(
                [Conv2D(2, 4, 3, stride=2, padding=1), BatchNorm2D(4), ReLU()],
                shortcut=[Conv2D(2, 4, 1, stride=2)],
            ),
            GlobalAvgPool2D(),
            Dense(4, 3),
        ],
        (2, 7, 7),
    ),
]


def test_every_layer_type_has_a_case():
    covered = {type(layer).__name__ for _, layers, _ in CASES + RESIDUAL_CASES for layer in layers}
    assert covered == set(LAYER_TYPES), set(LAYER_TYPES) - covered


@pytest.mark.parametrize(("layers", "shape"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_onnxruntime_matches_every_layer(tmp_path, layers, shape):
    model = build(layers)
    path = fonnx.export(model, tmp_path / "m.onnx", input_shape=shape)
    check_file(path)
    for batch in (1, 7):
        x = inputs(shape, batch, seed=batch)
        assert_close(run_onnxruntime(path, x), model(x))

    # The file reads back as the same layers, computing bit for bit the same outputs.
    again, _ = fonnx.load(path)
    assert [type(a) for a in again.layers.values()] == [read_back(a) for a in layers]
    x = inputs(shape, 7, seed=3)
    np.testing.assert_array_equal(again(x), model(x))


def train_briefly(model: Sequential, steps: int = 3) -> Sequential:
    data = synthetic_arrays(n_train=32, n_test=1)
    x = data["train_images"][:, None].astype(np.float32) / 255
    y = data["train_labels"].astype(np.int64)
    loss, optimizer = SoftmaxCrossEntropy(), Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        loss.forward(model(x), y)
        model.backward(loss.backward())
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_onnxruntime_matches_the_presets(tmp_path, preset):
    model = train_briefly(PRESETS[preset].build(0))
    metadata = {"preset": preset, "dataset": "mnist", "input_shape": [1, 28, 28],
                "classes": [str(i) for i in range(10)]}  # fmt: skip
    path = fonnx.export(model, tmp_path / "m.onnx", metadata=metadata)
    check_file(path)
    digits = synthetic_arrays(n_train=7, n_test=1, seed=5)["train_images"]
    real = (digits[:, None] / np.float32(255)).astype(np.float32)
    for batch in (1, 7):
        for x in (inputs((1, 28, 28), batch, seed=batch), real[:batch]):
            assert_close(run_onnxruntime(path, x), model(x))


def test_onnxruntime_matches_the_lenet_preset_on_mnist(tmp_path, mnist_dir):
    from faltung.datasets import load_dataset

    model = train_briefly(PRESETS["lenet"].build(1), steps=2)
    path = fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 28, 28))
    images = load_dataset("mnist", mnist_dir).test_images[:7]  # (N, 1, 28, 28) in [0, 1]
    for batch in (1, 7):
        assert_close(run_onnxruntime(path, images[:batch]), model(images[:batch]))


def test_metadata_becomes_metadata_props(tmp_path):
    model = build([Conv2D(1, 2, 3), Flatten(), Dense(2 * 4 * 4, 3)])
    metadata = {"dataset": "mnist", "input_shape": [1, 6, 6], "classes": ["a", "b", "c"]}
    path = fonnx.export(model, tmp_path / "m.onnx", metadata=metadata)
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["class_names"]) == ["a", "b", "c"]
    assert json.loads(props["input_shape"]) == [1, 6, 6]
    assert json.loads(props["preprocessing"])["scale"] == pytest.approx(1 / 255)
    assert json.loads(props["faltung.metadata"]) == metadata
    assert proto.opset_import[0].version == fonnx.OPSET >= 13
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 6, 6]
    _, loaded = fonnx.load(path)
    assert {k: loaded[k] for k in metadata} == metadata


def test_without_an_input_shape_the_spatial_size_stays_open(tmp_path):
    model = build([Conv2D(2, 3, 3, padding=1), ReLU(), GlobalAvgPool2D(), Dense(3, 2)])
    path = fonnx.export(model, tmp_path / "m.onnx")
    check_file(path)
    for h, w in ((5, 5), (9, 6)):
        x = inputs((2, h, w), 3, seed=h)
        assert_close(run_onnxruntime(path, x), model(x))


def test_an_open_size_output_has_the_channels_of_a_residual_projection(tmp_path):
    model = build([Conv2D(1, 4, 3, padding=1),
                   Residual([Conv2D(4, 8, 3, padding=1)], shortcut=[Conv2D(4, 8, 1)])])  # fmt: skip
    path = fonnx.export(model, tmp_path / "m.onnx")
    check_file(path)  # the full checker compares the declared output with its inference
    dims = onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == ["N", 8, "h", "w"]


@pytest.mark.parametrize(
    ("recorded", "prop"),
    [
        ({"dataset": "mnist"}, {"scale": 1 / 255}),
        ({"preprocessing": {"mean": [0.5], "std": [0.25]}},
         {"scale": 1 / 255, "mean": [0.5], "std": [0.25]}),
    ],
    ids=["older-file", "standardised"],
)  # fmt: skip
def test_the_preprocessing_prop_describes_the_whole_pipeline(tmp_path, recorded, prop):
    model = build([Conv2D(1, 2, 3), Flatten(), Dense(2 * 4 * 4, 3)])
    path = fonnx.export(model, tmp_path / "m.onnx", metadata={"input_shape": [1, 6, 6], **recorded})
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    written = json.loads(props["preprocessing"])
    assert written["scale"] == pytest.approx(prop["scale"])
    assert {key: written[key] for key in prop if key != "scale"} == {
        key: value for key, value in prop.items() if key != "scale"
    }  # mean and std as written: JSON keeps a float's digits
    assert written["layout"] == "NCHW"
    _, metadata = fonnx.load(path)
    assert metadata.get("preprocessing") == recorded.get("preprocessing")


@pytest.mark.parametrize(
    ("prop", "kept"),
    [
        ({"scale": 1 / 255, "mean": [0.5], "std": [0.25]}, True),
        ({"mean": [127.0], "std": [64.0]}, False),  # no scale: in 0..255 units, perhaps
        ({"scale": "1/255", "mean": [0.5], "std": [0.25]}, False),
        ({"scale": 1.0, "mean": [0.5], "std": [0.25]}, False),
    ],
)
def test_a_standardisation_is_read_from_the_prop_alone_only_in_faltungs_units(tmp_path, prop, kept):
    model = build([Conv2D(1, 2, 3), Flatten(), Dense(2 * 4 * 4, 3)])
    path = fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 6, 6))
    proto = onnx.load(str(path))
    del proto.metadata_props[:]  # another tool's file: no faltung.metadata
    onnx.helper.set_model_props(proto, {"preprocessing": json.dumps(prop)})
    onnx.save(proto, str(path))
    _, metadata = fonnx.load(path)
    if kept:
        assert metadata["preprocessing"] == {"mean": [0.5], "std": [0.25]}
    else:
        assert "preprocessing" not in metadata
        assert json.loads(metadata["onnx"]["preprocessing"]) == prop


def test_a_standardisation_for_other_channels_is_refused(tmp_path):
    model = build([Conv2D(1, 2, 3), Flatten(), Dense(2 * 4 * 4, 3)])
    path = fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 6, 6))
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    prop = {"scale": 1 / 255, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}
    onnx.helper.set_model_props(proto, {"preprocessing": json.dumps(prop)})
    onnx.save(proto, str(path))
    with pytest.raises(fonnx.OnnxImportError, match="metadata_props: .*preprocessing of 3"):
        fonnx.load(path)


def test_another_tools_preprocessing_prop_is_kept_aside(tmp_path):
    model = build([Conv2D(1, 2, 3), Flatten(), Dense(2 * 4 * 4, 3)])
    path = fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 6, 6))
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"preprocessing": '"imagenet"'})
    onnx.save(proto, str(path))
    _, metadata = fonnx.load(path)
    assert "preprocessing" not in metadata
    assert metadata["onnx"]["preprocessing"] == '"imagenet"'


def test_a_layer_without_an_onnx_counterpart_is_refused(tmp_path):
    class Square(Layer):
        def forward(self, x):
            return x * x

    model = Sequential([Dense(3, 3), Square()], seed=0)
    with pytest.raises(fonnx.OnnxExportError, match="'1' \\(Square\\) has no ONNX export"):
        fonnx.export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_wrong_input_shape_is_refused(tmp_path):
    model = build([Flatten(), Dense(12, 2)])
    with pytest.raises(fonnx.OnnxExportError, match="input shape"):
        fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 5, 5))


def test_float64_models_export_as_double(tmp_path):
    model = build([Conv2D(1, 2, 3), ReLU(), Flatten(), Dense(2 * 3 * 3, 2)]).astype(np.float64)
    path = fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 5, 5))
    check_file(path)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    again, _ = fonnx.load(path)
    x = np.random.default_rng(0).normal(size=(3, 1, 5, 5))
    assert again.dtype == np.float64
    np.testing.assert_array_equal(again(x), model(x))


def test_names_inside_a_residual_block_come_back(tmp_path):
    model = build([Conv2D(1, 2, 3, padding=1),
                   Residual([("c1", Conv2D(2, 2, 3, padding=1)), ("act", ReLU())],
                            shortcut=[("proj", Conv2D(2, 2, 1))])])  # fmt: skip
    back, _ = fonnx.load(fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 6, 6)))
    assert [name for name, _ in back.named_layers()] == [name for name, _ in model.named_layers()]


def test_a_residual_block_inside_another_comes_back(tmp_path):
    inner = Residual([("conv", Conv2D(2, 2, 3, padding=1))])
    model = build([Conv2D(1, 2, 3, padding=1),
                   Residual([("c1", Conv2D(2, 2, 3, padding=1)), ("inner", inner),
                             ("act", ReLU())])])  # fmt: skip
    back, _ = fonnx.load(fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 6, 6)))
    assert [name for name, _ in back.named_layers()] == [name for name, _ in model.named_layers()]
    x = np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(back.eval()(x), model.eval()(x))


@pytest.mark.parametrize("where", ["body", "shortcut", "twice"])
def test_a_block_nested_at_the_start_of_a_branch_comes_back(tmp_path, where):
    """A block that starts a branch forks at the same tensor as the block around it, which
    then feeds three or four nodes."""
    inner = Residual([("conv", Conv2D(2, 2, 3, padding=1))])
    if where == "body":
        block = Residual([("inner", inner), ("act", ReLU())], shortcut=[("proj", Conv2D(2, 2, 1))])
    elif where == "shortcut":
        block = Residual([("c1", Conv2D(2, 2, 3, padding=1))], shortcut=[("inner", inner)])
    else:
        block = Residual([("middle", Residual([("inner", inner)]))])
    model = build([Conv2D(1, 2, 3, padding=1), block])
    back, _ = fonnx.load(fonnx.export(model, tmp_path / "m.onnx", input_shape=(1, 6, 6)))
    assert back.config() == model.config()
    x = np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(back.eval()(x), model.eval()(x))
