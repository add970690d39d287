"""``faltung explain``, ``evaluate --misclassified`` and ``layers.png`` from ``faltung train``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faltung.cli import main
from faltung.io import save_model

from ..explain.models import colour_net, trained_grey_net

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory):
    model, images, labels = trained_grey_net()
    directory = tmp_path_factory.mktemp("model")
    meta = {"input_shape": [1, 28, 28], "classes": [f"c{i}" for i in range(10)]}
    save_model(model, directory / "model.npz", meta)
    np.save(directory / "digit.npy", images[0, 0])
    return directory, int(labels[0])


def test_explain_writes_every_picture_and_prints_the_top_classes(grey_model, tmp_path, capsys):
    directory, label = grey_model
    out = tmp_path / "pictures"
    code = main(["explain", str(directory / "model.npz"), str(directory / "digit.npy"),
                 "--out", str(out), "--steps", "16"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith(f"{directory / 'digit.npy'}: c{label} (")
    layers = sorted(p.name for p in (out / "layers").iterdir())
    assert layers == ["1_conv1.png", "2_pool1.png", "3_relu1.png", "4_flatten.png", "5_fc1.png",
                      "6_sigmoid.png", "7_fc2.png"]  # fmt: skip
    for name in ("filters_conv1.png", "saliency.png", "integrated_gradients.png",
                 "occlusion.png", "probabilities.png"):  # fmt: skip
        assert (out / name).stat().st_size > 5_000, name
        assert str(out / name) in printed


def test_explain_a_colour_model_without_metadata(tmp_path, capsys):
    save_model(colour_net(), tmp_path / "colour.npz")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "photo.npy", image)
    code = main(["explain", str(tmp_path / "colour.npz"), str(tmp_path / "photo.npy"),
                 "--out", str(tmp_path / "out"), "--steps", "8", "--class", "2"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "out" / "layers" / "1_conv_a.png").is_file()
    assert "class 2" not in capsys.readouterr().err


def test_explain_refuses_bad_input_in_one_line(grey_model, tmp_path, capsys):
    directory, _ = grey_model
    np.save(tmp_path / "small.npy", np.zeros((10, 10)))
    model = str(directory / "model.npz")
    assert main(["explain", model, str(tmp_path / "small.npy"), "--out", str(tmp_path)]) == 2
    assert "--resize" in capsys.readouterr().err
    assert main(["explain", model, str(directory / "digit.npy"), "--out", str(tmp_path),
                 "--class", "12"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("faltung: error:") and err.count("\n") == 1


def test_evaluate_misclassified_gallery(tmp_path, synthetic_dir, capsys):
    model, _, _ = trained_grey_net()
    # Damage one weight so that the model makes mistakes to show.
    model["fc2"].params["bias"][3] += 4.0
    save_model(model, tmp_path / "model.npz", {"dataset": "mnist", "input_shape": [1, 28, 28]})
    gallery = tmp_path / "mistakes.png"
    code = main(["evaluate", str(tmp_path / "model.npz"), "--data", str(synthetic_dir),
                 "--misclassified", "6", "--gallery", str(gallery)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert f"wrote {gallery}: the 6 most confident mistakes" in out
    assert gallery.stat().st_size > 5_000


def test_train_writes_layer_statistics_and_layers_png(tmp_path, synthetic_dir):
    out = tmp_path / "run"
    args = ["train", "--preset", "article", "--data", str(synthetic_dir), "--out", str(out),
            "--epochs", "2", "--batch-size", "20", "--train-size", "40", "--test-size", "10"]  # fmt: skip
    assert main(args) == 0
    rows = json.loads((out / "history.json").read_text())
    assert all("sigmoid.saturated" in row and "relu1.zero_frac" in row for row in rows)
    assert all("conv1.grad_norm" in row and "fc1.std" in row for row in rows)
    assert (out / "layers.png").stat().st_size > 10_000


def test_explain_inverts_a_dark_digit_on_light_paper_as_predict_does(grey_model, tmp_path, capsys):
    directory, label = grey_model
    light = tmp_path / "light.npy"
    np.save(light, 1 - np.load(directory / "digit.npy"))
    out = tmp_path / "pictures"
    args = ["explain", str(directory / "model.npz"), str(light), "--out", str(out), "--steps", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "inverted (a dark digit on a light background)" in printed
    assert printed.splitlines()[1].startswith(f"{light}: c{label} (")
    assert main([*args, "--invert", "no"]) == 0
    assert "inverted" not in capsys.readouterr().out


def test_a_gallery_needs_misclassified_and_no_mistakes_draw_nothing(
    tmp_path, synthetic_dir, capsys, monkeypatch
):
    model = tmp_path / "model.npz"
    assert main(["evaluate", str(model), "--gallery", "g.png"]) == 2
    assert "--gallery names the picture of --misclassified N" in capsys.readouterr().err

    from faltung.cli import explain as explain_cli
    from faltung.explain import mistakes

    monkeypatch.chdir(tmp_path)
    nothing = mistakes.Mistakes(*(np.zeros(0, np.int64) for _ in range(3)), np.zeros(0), 0)
    monkeypatch.setattr(mistakes, "confident_mistakes", lambda *args, **kwargs: nothing)
    images = np.zeros((3, 1, 4, 4), np.float32)
    explain_cli.write_mistakes_gallery(
        None, images, np.zeros(3, np.int64), classes=["a"], count=5, path="g.png",
        pixels=images, numbers=np.arange(3),
    )  # fmt: skip
    assert "no misclassified images among 3: nothing to draw" in capsys.readouterr().out
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_serve_refuses_a_port_that_is_not_one(port, capsys):
    with pytest.raises(SystemExit) as stopped:  # argparse's own usage error
        main(["serve", "model.npz", "--port", port])
    assert stopped.value.code == 2
    assert "must be a port number from 0 to 65535" in capsys.readouterr().err
