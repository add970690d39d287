"""faltung predict: images of every kind, a clear message for each bad file."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from faltung.cli import main
from faltung.images import ImageError, load_image
from faltung.io import save_model
from faltung.presets import lenet_network


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "model.npz"
    save_model(lenet_network(0), path, {"input_shape": [1, 28, 28], "classes": list("0123456789")})
    return path


def digit(size=(28, 28)):
    image = np.zeros(size, np.uint8)
    image[6:22, 12:16] = 255
    return image


def test_grey_colour_16bit_npy_and_resize(tmp_path):
    Image.fromarray(digit()).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([digit()] * 3, axis=-1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([digit()] * 3, axis=-1)).save(tmp_path / "rgb.jpg")
    Image.fromarray(digit().astype(np.uint16) * 257).save(tmp_path / "deep.png")
    np.save(tmp_path / "a.npy", digit())
    Image.fromarray(digit((56, 56))).save(tmp_path / "big.png")
    reference = load_image(tmp_path / "grey.png")
    assert reference.shape == (1, 28, 28) and reference.dtype == np.float32 and reference.max() == 1
    np.testing.assert_allclose(load_image(tmp_path / "rgb.png"), reference, atol=1e-6)
    np.testing.assert_allclose(load_image(tmp_path / "rgb.jpg"), reference, atol=0.2)  # lossy
    np.testing.assert_allclose(load_image(tmp_path / "deep.png"), reference, atol=1e-6)
    np.testing.assert_allclose(load_image(tmp_path / "a.npy"), reference)
    with pytest.raises(
        ImageError, match="image is 56x56 pixels, the model expects 28x28; pass --resize"
    ):
        load_image(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", resize=True).shape == (1, 28, 28)
    assert load_image(tmp_path / "grey.png", invert=True).min() == 0


def test_bad_files_are_reported_and_the_rest_classified(tmp_path, model_path, capsys):
    Image.fromarray(digit()).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (tmp_path / "folder").mkdir()
    np.save(tmp_path / "stack.npy", np.zeros((3, 28, 28)))
    np.save(tmp_path / "range.npy", np.full((28, 28), 7.0))
    files = ["good.png", "corrupt.png", "folder", "missing.png", "stack.npy", "range.npy"]
    code = main(["predict", str(model_path), *[str(tmp_path / f) for f in files], "--top", "2"])
    assert code == 2
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith(f"{tmp_path / 'good.png'}: ")
    assert "(" in out and out.count(",") == 1  # two classes with probabilities
    for expected in (
        "corrupt.png: not a readable image",
        "folder: is a directory",
        "missing.png: no such file",
        "stack.npy: expected one grey image",
        "range.npy: float images must hold finite values in [0, 1]",
        "5 of 6 files could not be classified",
    ):
        assert expected in err, expected


def test_many_files_are_processed_in_chunks(tmp_path, model_path, capsys):
    paths = []
    for i in range(700):
        path = tmp_path / f"{i}.npy"
        np.save(path, digit())
        paths.append(str(path))
    assert main(["predict", str(model_path), *paths, "--batch-size", "128"]) == 0
    assert capsys.readouterr().out.count("\n") == 700


def test_predict_with_a_file_that_is_not_a_model(tmp_path, capsys):
    bogus = tmp_path / "x.npz"
    np.savez(bogus, a=np.zeros(3))
    assert main(["predict", str(bogus), "whatever.png"]) == 2
    assert "not a faltung model file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bar_model(tmp_path_factory):
    """A tiny model that has learnt the synthetic task: class k is a bright bar at row 2k+4."""
    from faltung import Sequential
    from faltung.layers import Dense, Flatten
    from faltung.losses import SoftmaxCrossEntropy
    from faltung.optim import Adam
    from faltung.train import Trainer

    from ..synthetic import synthetic_arrays

    arrays = synthetic_arrays(300, 10)
    x = arrays["train_images"][:, None].astype(np.float32) / 255
    y = arrays["train_labels"].astype(np.int64)
    model = Sequential([Flatten(), Dense(784, 10)], seed=0)
    Trainer(model, SoftmaxCrossEntropy(), Adam(model.parameters(), lr=0.01), (x, y), 5, 20).fit()
    path = tmp_path_factory.mktemp("bars") / "model.npz"
    save_model(model, path, {"input_shape": [1, 28, 28], "classes": list("0123456789")})
    return path


def drawn_bar(k: int) -> np.ndarray:
    """Class k drawn as a paint program would: black ink on a white page."""
    page = np.full((28, 28), 255, np.uint8)
    page[2 * k + 4 : 2 * k + 6, 4:24] = 0
    return page


def test_dark_digits_on_a_light_background_are_inverted_and_said_so(tmp_path, bar_model, capsys):
    Image.fromarray(drawn_bar(7)).save(tmp_path / "seven.png")
    Image.fromarray(255 - drawn_bar(3)).save(tmp_path / "three.png")  # light on dark already
    assert main(["predict", str(bar_model), str(tmp_path / "seven.png"),
                 str(tmp_path / "three.png")]) == 0  # fmt: skip
    seven, three = capsys.readouterr().out.splitlines()
    assert seven.startswith(f"{tmp_path / 'seven.png'}: 7 (")
    assert seven.endswith("[inverted: dark digit on a light background]")
    assert three.startswith(f"{tmp_path / 'three.png'}: 3 (") and "inverted" not in three
    assert main(["predict", str(bar_model), str(tmp_path / "seven.png"), "--invert", "no"]) == 0
    as_is = capsys.readouterr().out
    assert "inverted" not in as_is and ": 7 (" not in as_is  # the raw page is no 7
    assert main(["predict", str(bar_model), str(tmp_path / "three.png"), "--invert", "yes"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("[inverted]")


def test_a_folder_of_npy_arrays_is_predicted_and_errors_keep_the_files_order(tmp_path, model_path):
    """A folder gives its .npy arrays too (a grey model), and a bad file's error comes
    where the file is, after the lines of the files before it, into a pipe as well."""
    folder = tmp_path / "digits"
    folder.mkdir()
    np.save(folder / "a.npy", digit())
    np.save(folder / "b.npy", np.full((28, 28), 7.0))  # out of range: an error
    Image.fromarray(digit()).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a real pipe
    done = subprocess.run(
        [sys.executable, "-m", "faltung", "predict", str(model_path), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 2, done.stdout
    assert lines[0].startswith(f"{folder / 'a.npy'}: ")
    assert lines[1].startswith("faltung: error: ") and "b.npy" in lines[1]
    assert lines[2].startswith(f"{folder / 'c.png'}: ")
    assert lines[3] == "faltung: 1 of 3 files could not be classified"


def test_a_file_named_error_is_a_file_and_a_repeated_bad_file_counts_twice(
    tmp_path, model_path, capsys
):
    Image.fromarray(digit()).save(tmp_path / "error.png")
    (tmp_path / "error").write_bytes((tmp_path / "error.png").read_bytes())
    missing = str(tmp_path / "missing.png")
    code = main(["predict", str(model_path), str(tmp_path / "error"), missing, missing])
    out, err = capsys.readouterr()
    assert code == 2
    assert out.startswith(f"{tmp_path / 'error'}: ") and out.count("\n") == 1
    assert err.count("missing.png: no such file") == 2
    assert "2 of 3 files could not be classified" in err
    assert main(["predict", str(model_path), missing]) == 2
    assert "1 of 1 file could not be classified" in capsys.readouterr().err


def test_a_tree_of_class_folders_is_predicted_file_by_file(tmp_path, model_path, capsys):
    for name in ("one", "two", ".hidden"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        Image.fromarray(digit()).save(tmp_path / "tree" / name / "d.png")
    assert main(["predict", str(model_path), str(tmp_path / "tree")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        str(tmp_path / "tree" / name / "d.png") for name in ("one", "two")
    ]
