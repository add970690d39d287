"""The command line on the user's own images and networks: folders, CSV, npz, --model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faltung.cli import main
from faltung.io import load_model

from ..synthetic import SHAPES, draw_shapes, install_catalogue, write_dataset, write_folder

pytest.importorskip("PIL")

NET = {
    "layers": [
        {"name": "conv1", "type": "Conv2D", "in_channels": 1, "out_channels": 8, "kernel_size": 3,
         "padding": 1},
        {"name": "relu1", "type": "ReLU"},
        {"name": "pool1", "type": "MaxPool2D", "kernel_size": 2},
        {"name": "block", "type": "Residual", "body": [
            {"name": "conv", "type": "Conv2D", "in_channels": 8, "out_channels": 8,
             "kernel_size": 3, "padding": 1}]},
        {"name": "relu2", "type": "ReLU"},
        {"name": "pool2", "type": "MaxPool2D", "kernel_size": 2},
        {"name": "flatten", "type": "Flatten"},
        {"name": "fc1", "type": "Dense", "in_features": 128, "out_features": 3},
    ]
}  # fmt: skip


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def shapes_dir(tmp_path):
    images, labels = draw_shapes(30, 16)
    write_folder(tmp_path / "shapes", images, labels)
    return tmp_path / "shapes"


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(NET))
    return path


def test_folder_training_reaches_a_sane_accuracy_and_predicts_names(
    tmp_path, shapes_dir, net_file, capsys
):
    out = tmp_path / "run"
    args = ["train", "--model", str(net_file), "--data", str(shapes_dir), "--out", str(out),
            "--epochs", "8", "--batch-size", "8", "--lr", "0.01", "--no-plots"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "data: shapes, all 72 training images, all 18 test images" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["full_test_accuracy"] >= 0.8, metrics
    _, meta = load_model(out / "model.npz")
    assert meta.classes == SHAPES and meta.input_shape == (1, 16, 16)
    assert meta.preprocessing is not None and meta.preprocessing["std"][0] != 1.0
    assert main(["evaluate", str(out / "model.npz"), "--data", str(shapes_dir)]) == 0
    report = capsys.readouterr().out
    assert f"accuracy {metrics['full_test_accuracy']:.4f}" in report and "cross" in report
    assert main(["evaluate", str(out / "model.npz")]) == 2  # the images are not in the file
    assert "trained on your own images ('shapes'); pass them with --data" in (
        capsys.readouterr().err
    )
    assert main(["predict", str(out / "model.npz"), str(shapes_dir / "box")]) == 0
    guesses = capsys.readouterr().out.splitlines()
    assert len(guesses) == 30 and sum(": box (" in line for line in guesses) >= 20


def test_fine_tuning_starts_from_the_trained_weights(tmp_path, shapes_dir, net_file, capsys):
    first = tmp_path / "first"
    base = ["--data", str(shapes_dir), "--batch-size", "8", "--lr", "0.01", "--no-plots"]
    assert (
        main(["train", "--model", str(net_file), "--out", str(first), "--epochs", "4", *base]) == 0
    )
    tuned = tmp_path / "tuned"
    args = ["train", "--model", str(first / "model.npz"), "--out", str(tuned), "--epochs", "1"]
    assert main([*args, *base]) == 0
    assert "fine-tuning its trained weights" in capsys.readouterr().out
    assert main([*args, *base, "--overwrite", "--normalize", "no"]) == 2
    assert "keeps the standardisation it was trained with" in capsys.readouterr().err
    before = json.loads((first / "history.json").read_text())
    after = json.loads((tuned / "history.json").read_text())
    rows = before["rows"] if isinstance(before, dict) else before
    rows_after = after["rows"] if isinstance(after, dict) else after
    assert rows_after[0]["loss"] < rows[0]["loss"]


def test_fine_tuning_a_model_with_dropout_is_reproducible(tmp_path, shapes_dir):
    layers = NET["layers"][:-1] + [{"name": "drop", "type": "Dropout", "p": 0.5}, NET["layers"][-1]]
    net = tmp_path / "drop.json"
    net.write_text(json.dumps({"layers": layers}))
    base = ["--data", str(shapes_dir), "--batch-size", "8", "--no-plots", "--epochs", "1"]
    assert main(["train", "--model", str(net), "--out", str(tmp_path / "first"), *base]) == 0
    tuned = []
    for run in ("a", "b"):
        args = ["train", "--model", str(tmp_path / "first" / "model.npz"),
                "--out", str(tmp_path / run), "--seed", "5", *base]  # fmt: skip
        assert main(args) == 0
        tuned.append(load_model(tmp_path / run / "model.npz")[0].state_dict())
    for key, value in tuned[0].items():
        np.testing.assert_array_equal(tuned[1][key], value, err_msg=key)


def test_rgb_folder_with_size_augmentation_and_the_resnet(tmp_path, capsys):
    images, labels = draw_shapes(6, 20, rgb=True)
    write_folder(tmp_path / "rgb" / "train", images, labels)
    write_folder(tmp_path / "rgb" / "test", images[::3], labels[::3])
    out = tmp_path / "run"
    args = ["train", "--preset", "resnet", "--data", str(tmp_path / "rgb"), "--image-size", "12",
            "--augment", "--epochs", "1", "--batch-size", "6", "--out", str(out), "--no-plots"]  # fmt: skip
    assert main(args) == 0
    _, meta = load_model(out / "model.npz")
    assert meta.input_shape == (3, 12, 12) and len(meta.preprocessing["mean"]) == 3
    assert meta.settings["augment"] == "auto"
    assert main(["predict", str(out / "model.npz"), str(tmp_path / "rgb" / "test" / "bar")]) == 0


def test_csv_and_npz_train(tmp_path, net_file):
    images, labels = draw_shapes(10, 16)
    rows = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    np.savetxt(tmp_path / "d.csv", rows, fmt="%d", delimiter=",")
    np.savez(tmp_path / "d.npz", x=images[:, 0], y=labels)
    for name in ("d.csv", "d.npz"):
        args = ["train", "--model", str(net_file), "--data", str(tmp_path / name), "--epochs",
                "1", "--out", str(tmp_path / name.replace(".", "_")), "--no-plots"]  # fmt: skip
        assert main(args) == 0


def test_summary_of_a_network_file(net_file, capsys):
    assert main(["summary", "--model", str(net_file), "--input-shape", "1x16x16"]) == 0
    out = capsys.readouterr().out
    assert "block.body.conv" in out and "forward FLOPs per image" in out


def test_summary_takes_a_trained_model_file_as_model_too(tmp_path, capsys):
    """``train --model`` takes a network file or a trained model; so does ``summary``."""
    from faltung.io import ModelMetadata, save_model
    from faltung.presets import PRESETS

    path = tmp_path / "m.npz"
    save_model(PRESETS["lenet"].build(0), path, ModelMetadata(input_shape=(1, 28, 28)))
    assert main(["summary", "--model", str(path)]) == 0
    assert "431,080" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty_class", "box: class folder holds no images"),
        ("bad_augment", "--augment: unknown augmentation 'rotate'"),
        ("missing_model", "--model"),
        ("wrong_shapes", "fc1 (Dense): expected 128 input features"),
        ("labels", "training label 7 is out of range for the 3 classes"),
        ("mixed_sizes", "pass --image-size HxW"),
        ("text_file", "d.txt: not an image folder, a .csv or .npz file, or a folder of IDX"),
        ("nowhere", "nowhere: no such file or directory"),
    ],
)
def test_bad_inputs_are_one_line_before_any_output(
    tmp_path, shapes_dir, net_file, case, message, capsys
):
    data, model, extra = shapes_dir, net_file, []
    if case == "empty_class":
        for path in (shapes_dir / "box").iterdir():
            path.unlink()
    elif case == "bad_augment":
        extra = ["--augment", "rotate"]
    elif case == "missing_model":
        model = tmp_path / "nothing.toml"
    elif case == "wrong_shapes":
        extra = ["--image-size", "20"]
    elif case == "labels":
        data = tmp_path / "d.npz"
        np.savez(data, x=np.zeros((4, 16, 16), np.uint8), y=np.array([0, 1, 2, 7]),
                 classes=np.array(SHAPES))  # fmt: skip
    elif case == "mixed_sizes":
        from PIL import Image

        Image.new("L", (17, 16)).save(shapes_dir / "bar" / "odd.png")
    elif case == "text_file":
        data = tmp_path / "d.txt"
        data.write_text("1,2,3\n")
    elif case == "nowhere":
        data = tmp_path / "nowhere"
    out = tmp_path / "never"
    args = ["train", "--model", str(model), "--data", str(data), "--out", str(out), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("faltung: error: ") and message in err[0], err
    assert not out.exists()


def test_mnist_as_a_png_folder_trains_exactly_like_the_idx_files(
    tmp_path, mnist_dir, monkeypatch, capsys
):
    """Export MNIST images to DIR/train/<digit>/*.png and DIR/test/...; the folder must give
    the same pixels, and a short run on it the same numbers as on IDX files that hold the
    same images in the same order."""
    from faltung.datasets import load_data, load_dataset

    mnist = load_dataset("mnist", mnist_dir, normalize=False)
    pick = np.random.default_rng(0)
    train_index = np.sort(pick.choice(60_000, 600, replace=False))
    test_index = np.sort(pick.choice(10_000, 100, replace=False))
    digits = tuple(str(d) for d in range(10))
    for split, images, labels in (
        ("train", mnist.train_images[train_index], mnist.train_labels[train_index]),
        ("test", mnist.test_images[test_index], mnist.test_labels[test_index]),
    ):
        write_folder(tmp_path / "png" / split, images, labels, classes=digits)
    folder = load_data(tmp_path / "png")
    # The folder lists images by class, then name; IDX files holding that order.
    order = {
        split: np.lexsort((index, labels[index]))
        for split, index, labels in (("train", train_index, mnist.train_labels),
                                     ("test", test_index, mnist.test_labels))
    }  # fmt: skip
    np.testing.assert_array_equal(
        folder.train_images, mnist.train_images[train_index][order["train"]]
    )
    np.testing.assert_array_equal(folder.test_labels, mnist.test_labels[test_index][order["test"]])
    arrays = {
        "train_images": folder.train_images[:, 0], "train_labels": folder.train_labels.astype(np.uint8),
        "test_images": folder.test_images[:, 0], "test_labels": folder.test_labels.astype(np.uint8),
    }  # fmt: skip
    install_catalogue(monkeypatch, write_dataset(tmp_path / "idx", arrays))
    results = {}
    for name, data in (("png", tmp_path / "png"), ("idx", tmp_path / "idx")):
        out = tmp_path / f"run-{name}"
        args = ["train", "--preset", "lenet", "--data", str(data), "--epochs", "1",
                "--batch-size", "32", "--out", str(out), "--no-plots"]  # fmt: skip
        assert main(args) == 0
        results[name] = json.loads((out / "metrics.json").read_text())
    assert results["png"]["final_loss"] == results["idx"]["final_loss"]
    assert results["png"]["full_test_accuracy"] == results["idx"]["full_test_accuracy"] > 0.5


def test_resume_with_a_network_file_and_augmentation_is_bit_exact(tmp_path, shapes_dir, net_file):
    # A constant schedule: a cosine one depends on --epochs, which differs here.
    common = ["--model", str(net_file), "--data", str(shapes_dir), "--augment", "shift,affine", "--schedule", "constant",
              "--batch-size", "16", "--no-plots"]  # fmt: skip
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "whole")]) == 0
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "part")]) == 0
    assert (
        main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "part"), "--resume"]) == 0
    )
    whole, _ = load_model(tmp_path / "whole" / "model.npz")
    resumed, _ = load_model(tmp_path / "part" / "model.npz")
    for name, value in whole.state_dict().items():
        np.testing.assert_array_equal(value, resumed.state_dict()[name], err_msg=name)


def test_resume_with_another_network_file_is_refused(tmp_path, shapes_dir, net_file, capsys):
    out = tmp_path / "run"
    base = ["train", "--data", str(shapes_dir), "--out", str(out), "--no-plots"]
    assert main([*base, "--model", str(net_file), "--epochs", "1"]) == 0
    other = tmp_path / "other.json"
    other.write_text(net_file.read_text())
    assert main([*base, "--model", str(other), "--epochs", "2", "--resume"]) == 2
    assert f"and --model {net_file}, not preset 'lenet' and --model {other}" in (
        capsys.readouterr().err
    )
    assert main([*base, "--epochs", "2", "--resume"]) == 2  # the preset's own network
    assert f"resume it with --preset lenet --model {net_file} --out" in capsys.readouterr().err


def test_resume_on_other_images_is_refused(tmp_path, shapes_dir, net_file, capsys):
    out = tmp_path / "run"
    base = ["train", "--model", str(net_file), "--out", str(out), "--batch-size", "8",
            "--no-plots"]  # fmt: skip
    assert main([*base, "--data", str(shapes_dir), "--epochs", "1"]) == 0
    images, labels = draw_shapes(30, 16, seed=9)
    write_folder(tmp_path / "other", images, labels)
    capsys.readouterr()
    assert main([*base, "--data", str(tmp_path / "other"), "--epochs", "2", "--resume"]) == 2
    assert "does not hold the images the run in" in capsys.readouterr().err
    assert main([*base, "--data", str(shapes_dir), "--epochs", "2", "--resume"]) == 0

    drawn = [*base[:-1], "--data", str(shapes_dir), "--train-size", "40", "--overwrite"]
    assert main([*drawn, "--epochs", "1", "--no-plots"]) == 0
    write_folder(tmp_path / "few", images[::10], labels[::10])  # fewer than the run drew
    capsys.readouterr()
    assert main([*base, "--data", str(tmp_path / "few"), "--epochs", "2", "--resume"]) == 2
    assert "--resume: the run in" in (err := capsys.readouterr().err)
    assert "drew 40 training images, and few has" in err and "not the images it trained" in err


def test_own_images_without_a_preset_train_on_all_of_them(tmp_path, shapes_dir, capsys):
    """The article's 10,000 and 100 MNIST images fit no other data: own images default to
    lenet's settings, which take every image."""
    out = tmp_path / "run"
    args = ["train", "--data", str(shapes_dir), "--out", str(out), "--epochs", "1",
            "--no-plots"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "preset lenet" in printed and "all 72 training images" in printed


def test_a_presets_image_count_that_the_data_lacks_names_the_preset(tmp_path, shapes_dir, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--preset", "article", "--data", str(shapes_dir), "--out", out]) == 2
    assert (
        "preset article draws 10,000 training images, and shapes has 72: pass --train-size N "
        "(or --preset lenet, which takes all)"
    ) in capsys.readouterr().err


@pytest.fixture
def shapes_model(tmp_path, shapes_dir, net_file):
    """A model of the shapes folder, trained behind a standardisation (own data's default
    for a network file), and the folder."""
    out = tmp_path / "run"
    args = ["train", "--model", str(net_file), "--data", str(shapes_dir), "--out", str(out),
            "--epochs", "2", "--batch-size", "8", "--no-plots"]  # fmt: skip
    assert main(args) == 0
    assert load_model(out / "model.npz").metadata.preprocessing["std"][0] != 1.0
    return out / "model.npz", shapes_dir


def test_explain_and_predict_agree_behind_a_standardisation(tmp_path, shapes_model, capsys):
    pytest.importorskip("matplotlib")
    model, shapes_dir = shapes_model
    image = sorted((shapes_dir / "box").iterdir())[0]
    capsys.readouterr()
    assert main(["predict", str(model), str(image), "--top", "3"]) == 0
    predicted = capsys.readouterr().out.strip().split(": ", 1)[1]
    assert main(["explain", str(model), str(image), "--out", str(tmp_path / "x"),
                 "--steps", "4", "--top", "3"]) == 0  # fmt: skip
    explained = capsys.readouterr().out.splitlines()[0].split(": ", 1)[1]
    assert explained == predicted
    assert (tmp_path / "x" / "layers" / "1_standardise.png").exists()


def test_predict_takes_own_grey_images_as_they_are(tmp_path, shapes_model, capsys):
    from PIL import Image

    from faltung.images import is_dark_on_light

    model, shapes_dir = shapes_model
    image = np.asarray(Image.open(sorted((shapes_dir / "box").iterdir())[0]))
    Image.fromarray(255 - image).save(tmp_path / "light.png")  # dark on light
    assert is_dark_on_light((255 - image) / 255)  # what an MNIST model would turn over
    capsys.readouterr()
    assert main(["predict", str(model), str(tmp_path / "light.png")]) == 0
    assert "inverted" not in capsys.readouterr().out


def test_evaluate_matches_classes_by_name_and_warns_of_changed_data(tmp_path, shapes_model, capsys):
    import shutil

    model, shapes_dir = shapes_model
    subset = tmp_path / "subset"
    for name in ("cross", "box"):  # two of the three classes
        shutil.copytree(shapes_dir / name, subset / name)
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(subset), "--all"]) == 0
    report = capsys.readouterr().out
    assert "bar  (no images)" in report  # box's images counted as box, not as class 0
    assert "box  (no images)" not in report and "cross  (no images)" not in report
    shutil.copytree(shapes_dir / "box", subset / "circle")
    assert main(["evaluate", str(model), "--data", str(subset), "--all"]) == 2
    assert "class 'circle' is not one the model knows (bar, box, cross)" in capsys.readouterr().err

    assert main(["evaluate", str(model), "--data", str(shapes_dir)]) == 0
    assert "warning" not in capsys.readouterr().err
    extra = shapes_dir / "box" / "zz_extra.png"
    shutil.copy(sorted((shapes_dir / "box").iterdir())[0], extra)
    assert main(["evaluate", str(model), "--data", str(shapes_dir)]) == 0
    printed = capsys.readouterr()
    assert "these are not the images" in printed.err
    assert (
        "drawn again from the changed data" in printed.out and "as in training" not in printed.out
    )


def test_evaluate_scores_every_image_of_new_data_and_says_what_it_scored(
    tmp_path, shapes_model, capsys
):
    """A folder the model was not trained on is a new labelled set: every image of it is
    scored, not a fifth drawn as a test split. --all on the training folder scores all of
    it too, and says that its training images are among them."""
    model, shapes_dir = shapes_model
    images, labels = draw_shapes(7, 16, seed=5)
    write_folder(tmp_path / "new", images, labels)
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(tmp_path / "new")]) == 0
    assert "on all 21 images of new\n" in capsys.readouterr().out
    assert main(["evaluate", str(model), "--data", str(shapes_dir), "--all"]) == 0
    assert "on all 90 images of shapes (its training images included)" in capsys.readouterr().out
    assert main(["evaluate", str(model), "--data", str(shapes_dir)]) == 0
    assert "on all 18 shapes test images, as in training" in capsys.readouterr().out
    assert main(["evaluate", str(model), "--data", str(tmp_path / "new"), "--test-size", "5"]) == 0
    assert "on 5 images of new drawn with seed 0" in capsys.readouterr().out
    import shutil

    copy = tmp_path / "copy"  # the training data under another name: found by its digest
    shutil.copytree(shapes_dir, copy)
    assert main(["evaluate", str(model), "--data", str(copy)]) == 0
    assert "on all 18 copy test images" in capsys.readouterr().out  # not all 90
    assert main(["evaluate", str(model), "--data", str(copy), "--all"]) == 0
    assert "on all 90 images of copy (its training images included)" in capsys.readouterr().out
    one = tmp_path / "one"
    write_folder(one, images[:1], labels[:1])  # nothing to hold out of one image
    assert main(["evaluate", str(model), "--data", str(one)]) == 0
    assert "on the one image of one" in capsys.readouterr().out


def test_own_data_without_a_test_split_needs_a_held_out_fraction(tmp_path, shapes_dir, capsys):
    args = ["train", "--data", str(shapes_dir), "--out", str(tmp_path / "r"), "--val-split", "0"]
    assert main(args) == 2
    assert "--val-split 0: shapes has no test split of its own" in capsys.readouterr().err


def test_a_run_of_own_data_is_named_after_it(tmp_path, shapes_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", str(shapes_dir), "--epochs", "1", "--no-plots"]
    assert main(args) == 0
    assert (tmp_path / "runs" / "shapes" / "model.npz").is_file()


def test_serve_shows_the_test_images_of_own_data(shapes_model):
    from argparse import Namespace

    from faltung.cli._model import load_with_metadata
    from faltung.cli.serve import sample_images

    model, shapes_dir = shapes_model
    _, metadata = load_with_metadata(model)
    images, labels, note = sample_images(Namespace(data=str(shapes_dir), dataset=None), metadata,
                                         (1, 16, 16))  # fmt: skip
    assert note == "" and images.shape == (18, 1, 16, 16) and 0 <= images.min() <= images.max() <= 1
    assert sorted(np.bincount(labels).tolist()) == [6, 6, 6]
    _, _, note = sample_images(Namespace(data=None, dataset=None), metadata, (1, 16, 16))
    assert note == "the model was trained on your own images (shapes); pass --data"


def test_a_network_ending_in_softmax_trains_and_predicts_as_one_without(
    tmp_path, shapes_dir, capsys
):
    """Cross-entropy is taken on the scores before a final Softmax (not on its output), and
    the probabilities printed are the model's own, not a second softmax of them."""
    runs = {}
    for name, extra in (("plain", []), ("softmax", [{"name": "probs", "type": "Softmax"}])):
        net = tmp_path / f"{name}.json"
        net.write_text(json.dumps({"layers": NET["layers"] + extra}))
        runs[name] = tmp_path / name
        args = ["train", "--model", str(net), "--data", str(shapes_dir), "--epochs", "2",
                "--batch-size", "8", "--out", str(runs[name]), "--no-plots"]  # fmt: skip
        assert main(args) == 0
    assert "the network ends in Softmax: training takes cross-entropy" in capsys.readouterr().out
    plain, _ = load_model(runs["plain"] / "model.npz")
    with_softmax, _ = load_model(runs["softmax"] / "model.npz")
    for key, value in plain.state_dict().items():
        np.testing.assert_array_equal(with_softmax.state_dict()[key], value, err_msg=key)
    resumed = tmp_path / "resumed"  # one epoch, then a second by --resume
    base = ["train", "--model", str(tmp_path / "softmax.json"), "--data", str(shapes_dir),
            "--batch-size", "8", "--out", str(resumed), "--no-plots"]  # fmt: skip
    assert main([*base, "--epochs", "1"]) == 0 and main([*base, "--epochs", "2", "--resume"]) == 0
    again, _ = load_model(resumed / "model.npz")
    assert list(again.layers)[-1] == "probs"  # the checkpoint kept the whole network
    capsys.readouterr()
    printed = {}
    for name in runs:
        assert main(["predict", str(runs[name] / "model.npz"), str(shapes_dir / "box")]) == 0
        assert main(["evaluate", str(runs[name] / "model.npz"), "--data", str(shapes_dir)]) == 0
        printed[name] = capsys.readouterr().out.replace(str(runs[name]), "RUN")
    assert printed["softmax"] == printed["plain"]


def test_a_validation_split_of_given_training_data_keeps_every_class(tmp_path, monkeypatch):
    """--val-split on data with a test split of its own is stratified: the one training
    image of a class stays in training (a plain permutation could hold it out)."""
    import faltung.cli.train as cli_train

    rng = np.random.default_rng(0)
    labels = np.array([0] + [1] * 9 + [2] * 10)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8), y_train=labels,
        x_test=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8), y_test=np.arange(6) % 3,
    )  # fmt: skip
    seen = {}
    real = cli_train.Trainer

    def capture(model, loss, optimizer, train_data, **kwargs):
        seen["train"], seen["val"] = train_data[1], kwargs["val_data"][1]
        return real(model, loss, optimizer, train_data, **kwargs)

    monkeypatch.setattr(cli_train, "Trainer", capture)
    for seed in range(5):
        args = ["train", "--data", str(tmp_path / "d.npz"), "--val-split", "0.5", "--epochs",
                "1", "--seed", str(seed), "--no-plots", "--out", str(tmp_path / f"r{seed}")]  # fmt: skip
        assert main(args) == 0
        assert set(seen["train"]) == {0, 1, 2} and len(seen["val"]) == 9  # 0 + 4 + 5
