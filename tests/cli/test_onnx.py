"""``faltung export`` and ``faltung import``: a model out to ONNX and back in."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from faltung import Sequential
from faltung.cli import main
from faltung.io import read_model_file, save_model
from faltung.layers import BatchNorm2D, Conv2D, Dense, Flatten, GlobalAvgPool2D, MaxPool2D, ReLU

onnx = pytest.importorskip("onnx")
METADATA = {"dataset": "mnist", "input_shape": [1, 8, 8], "classes": list("abc")}


def read(path):
    """(model, metadata) of a model file, whatever ``load_model`` returns."""
    header, arrays = read_model_file(path)
    model = Sequential.from_config(header["architecture"])
    model.load_state_dict(arrays)
    return model.eval(), header["metadata"]


@pytest.fixture
def model_file(tmp_path):
    model = Sequential([Conv2D(1, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2),
                        Flatten(), Dense(4 * 4 * 4, 3)], seed=0)  # fmt: skip
    return save_model(model, tmp_path / "model.npz", METADATA)


def test_export_then_import_gives_the_same_model(tmp_path, model_file, capsys):
    assert main(["export", str(model_file), str(tmp_path / "m.onnx")]) == 0
    assert "opset 17" in capsys.readouterr().out
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert json.loads({p.key: p.value for p in proto.metadata_props}["class_names"]) == list("abc")

    assert main(["import", str(tmp_path / "m.onnx"), str(tmp_path / "back.npz")]) == 0
    assert "Conv2D -> BatchNorm2D -> ReLU" in capsys.readouterr().out
    (original, _), (back, metadata) = read(model_file), read(tmp_path / "back.npz")
    assert metadata["classes"] == list("abc")  # the CLI's predict reads these
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(back(x), original(x))


def test_onnxruntime_runs_the_exported_file(tmp_path, model_file):
    ort = pytest.importorskip("onnxruntime")
    assert (
        main(["export", str(model_file), str(tmp_path / "m.onnx"), "--input-shape", "1,8,8"]) == 0
    )
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((7, 1, 8, 8), dtype=np.float32)
    want = read(model_file)[0](x)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "{missing}", "{out}"], "no such file"),
        (["export", "{model}", "{model}"], "exists; pass --overwrite"),
        (["export", "{model}", "{out}", "--input-shape", "1,x"], "--input-shape must be integers"),
        (["export", "{model}", "{out}", "--input-shape", "1,5,5"], "does not accept input shape"),
        (["import", "{missing}", "{out}"], "no such file"),
        (["import", "{model}", "{out}"], "not a readable ONNX file"),
        (["export", "{model}", "{nodir}"], "m.onnx: the directory"),  # not the temporary file
        (["export", "{model}", "{folder}", "--overwrite"], "is a folder"),
    ],
)
def test_expected_failures_are_one_line(tmp_path, model_file, capsys, args, message):
    paths = {"model": model_file, "missing": tmp_path / "nope", "out": tmp_path / "o.x",
             "nodir": tmp_path / "no" / "m.onnx", "folder": tmp_path}  # fmt: skip
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("faltung: error:") and "\n" not in err and message in err
    assert not (tmp_path / "o.x").exists()


def test_without_onnx_the_commands_say_how_to_install_it(tmp_path, model_file, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    assert main(["export", str(model_file), str(tmp_path / "m.onnx")]) == 2
    assert "pip install 'faltung[onnx]'" in capsys.readouterr().err


def test_a_round_trip_gives_a_file_faltung_loads(tmp_path, capsys):
    """A model file from before preprocessing was recorded: its export carries only the
    pipeline's scale, and the import must not take that for a standardisation."""
    model = Sequential([Conv2D(1, 2, 3), Flatten(), Dense(2 * 6 * 6, 3)], seed=0)
    old = save_model(model, tmp_path / "old.npz", METADATA)
    assert main(["export", str(old), str(tmp_path / "m.onnx")]) == 0
    assert main(["import", str(tmp_path / "m.onnx"), str(tmp_path / "back.npz")]) == 0
    assert main(["summary", str(tmp_path / "back.npz")]) == 0
    assert "preprocessing" not in read(tmp_path / "back.npz")[1]


def test_an_exported_input_shape_replaces_the_recorded_one(tmp_path):
    model = Sequential([Conv2D(1, 2, 3), GlobalAvgPool2D(), Dense(2, 3)], seed=0)
    model_file, out = save_model(model, tmp_path / "model.npz", METADATA), tmp_path / "m.onnx"
    assert main(["export", str(model_file), str(out), "--input-shape", "1,12,12"]) == 0
    assert main(["import", str(out), str(tmp_path / "back.npz")]) == 0
    assert read(tmp_path / "back.npz")[1]["input_shape"] == [1, 12, 12]
