"""Import: CNNs exported by PyTorch (both of its exporters) must compute what PyTorch does,
and export again from faltung to a file onnxruntime agrees with."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from .helpers import assert_close, check_file, run_onnxruntime

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import faltung.onnx as fonnx  # noqa: E402

nn = torch.nn


class ViewBatch(nn.Module):
    """x.view(x.size(0), -1): the old exporter emits Shape -> Gather -> Unsqueeze -> Concat."""

    def forward(self, x):
        return x.view(x.size(0), -1)


class ViewConstant(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features

    def forward(self, x):
        return x.reshape(-1, self.features)


class Block(nn.Module):
    """A ResNet basic block: relu(body(x) + shortcut(x)), the shortcut a strided 1x1 conv
    with batch norm when the shape changes, else the identity."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))  # fmt: skip
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class SqueezeTwice(nn.Module):
    """x.squeeze(-1).squeeze(-1) after global pooling: two Squeeze nodes of one axis each."""

    def forward(self, x):
        return x.squeeze(-1).squeeze(-1)


class PlusLinear(nn.Module):
    """x + fc(x) with a bias-free fc: a MatMul whose Add ends the residual, not a bias."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(features, features, bias=False)

    def forward(self, x):
        return x + self.fc(x)


def nets():
    """(id, module, one example's shape): padding, stride, groups, dilation, batch norm,
    average and max pooling, dropout, and each way of flattening before the classifier."""
    return [
        ("pad-stride", nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(4, 8, 3, padding=(1, 2), bias=False), nn.Tanh(),
            nn.Flatten(), nn.Linear(8 * 7 * 9, 5)), (1, 14, 14)),
        ("groups-dilation", nn.Sequential(
            nn.Conv2d(2, 6, 3, dilation=2, groups=2), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
            ViewBatch(), nn.Linear(6 * 5 * 5, 4), nn.Sigmoid()), (2, 14, 14)),
        ("batchnorm-pooling", nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.MaxPool2d(2), nn.BatchNorm2d(8), nn.ReLU(),
            nn.AvgPool2d(3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(8),
            nn.Dropout(0.3), nn.Linear(8, 3), nn.Softmax(dim=1)), (1, 12, 12)),
        ("same-ceil-view", nn.Sequential(
            nn.Conv2d(1, 8, 3, padding="same"), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(3, 3, ceil_mode=True), nn.Dropout(0.5), ViewConstant(72),
            nn.Linear(72, 3)), (1, 9, 9)),
        ("lenet", nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(20, 50, 5),
            nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(500, 10)), (1, 28, 28)),
        ("gap-view-residual", nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), ViewBatch(), nn.Linear(4, 4),
            PlusLinear(4), nn.Linear(4, 2)), (1, 7, 7)),
        ("gap-squeeze", nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), SqueezeTwice(), nn.Linear(4, 2)),
            (1, 7, 7)),
        ("resnet", nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            Block(8, 8, 1), Block(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(16, 10)), (1, 12, 12)),
    ]  # fmt: skip


NETS = nets()


def prepared(module):
    torch.manual_seed(0)
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            for tensor, low, high in ((layer.running_mean, -1, 1), (layer.running_var, 0.5, 2),
                                      (layer.weight.data, 0.5, 2), (layer.bias.data, -1, 1)):  # fmt: skip
                tensor.uniform_(low, high)
    return module.eval()


def torch_export(module, shape, path, dynamo: bool, opset: int | None = None) -> None:
    example = (torch.randn(2, *shape),)
    names = {"input_names": ["input"], "output_names": ["output"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = {0: torch.export.Dim("batch")}
            torch.onnx.export(module, example, path, dynamo=True, dynamic_shapes=(batch,), **names)
        else:
            axes = {"input": {0: "batch"}, "output": {0: "batch"}}
            torch.onnx.export(
                module, example, path, dynamo=False, dynamic_axes=axes, opset_version=opset, **names
            )


# The new (dynamo) exporter takes seconds per network, so it gets the one network that
# covers its own patterns: ReduceMean for global pooling, Reshape by a constant shape.
# Opset 11 has the older forms: Unsqueeze's axes as an attribute, Softmax over trailing axes.
CASES = [("torchscript", *net) for net in NETS] + [("dynamo", *NETS[2])]
CASES += [("opset11", *net) for net in NETS[1:3]]


@pytest.mark.parametrize(
    ("exporter", "module", "shape"),
    [(exporter, module, shape) for exporter, _, module, shape in CASES],
    ids=[f"{exporter}-{name}" for exporter, name, _, _ in CASES],
)
def test_pytorch_exports_import_exactly_and_round_trip(tmp_path, exporter, module, shape):
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")  # the new exporter needs it
    module = prepared(module)
    opset = 11 if exporter == "opset11" else None
    torch_export(module, shape, tmp_path / "torch.onnx", exporter == "dynamo", opset)
    model, metadata = fonnx.load(tmp_path / "torch.onnx")
    assert metadata["input_shape"] == list(shape)

    rng = np.random.default_rng(0)
    for batch in (1, 7):
        x = rng.normal(size=(batch, *shape)).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        assert_close(model(x), want)

    again = fonnx.export(model, tmp_path / "faltung.onnx", metadata=metadata)
    check_file(again)
    x = rng.normal(size=(7, *shape)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert_close(run_onnxruntime(again, x), want)
    back, _ = fonnx.load(again)
    assert back.config() == model.config()
    np.testing.assert_array_equal(back(x), model(x))


def test_pytorch_names_become_plain_layer_names(tmp_path):
    _, module, shape = next(net for net in NETS if net[0] == "lenet")
    torch_export(prepared(module), shape, tmp_path / "m.onnx", dynamo=False)
    model, _ = fonnx.load(tmp_path / "m.onnx")
    assert list(model.layers)[:4] == ["conv1", "pool1", "relu1", "conv2"]
    assert list(model.state_dict())[:2] == ["conv1.weight", "conv1.bias"]


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.Sequential(nn.Conv2d(1, 2, 2), nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode=1"),
        (nn.Sequential(nn.AvgPool2d(3, 2, 1, count_include_pad=False)), "count_include_pad=0"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.LPPool2d(2, 2)), "Pow.*pattern|LpPool"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ELU()), r"\(Elu\): operator not supported"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(2)), r"\(Reshape\): only a Reshape that"),
    ],
    ids=["ceil-mode", "count-include-pad", "lppool", "elu", "flatten-axis"],
)
def test_what_has_no_counterpart_is_refused_by_name(tmp_path, module, message):
    torch_export(module.eval(), (1, 8, 8), tmp_path / "m.onnx", dynamo=False)
    with pytest.raises(fonnx.OnnxImportError, match=message):
        fonnx.load(tmp_path / "m.onnx")
