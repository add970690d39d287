"""The user's own data: image folders (cached), MNIST-style CSV, .npz; every bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest

from faltung.datasets import (
    DatasetError,
    ImageArray,
    Preprocessing,
    check_training_labels,
    load_data,
    stratified_split,
)
from faltung.datasets import folder as folder_module
from faltung.datasets.folder import load_folder

from ..synthetic import SHAPES, draw_shapes, write_folder

pytest.importorskip("PIL")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.mark.parametrize("rgb", [False, True])
def test_folder_loads_grey_or_rgb_with_a_stratified_split(tmp_path, cache, rgb):
    images, labels = draw_shapes(10, 16, rgb=rgb)
    write_folder(tmp_path / "shapes", images, labels)
    data = load_data(tmp_path / "shapes", cache=cache)
    assert data.classes == SHAPES and data.held_out
    assert data.train_images.dtype == np.uint8
    assert data.train_images.shape[1:] == ((3 if rgb else 1), 16, 16)
    assert np.bincount(data.test_labels).tolist() == [2, 2, 2]  # 20 % of each class
    assert len(data.train_images) + len(data.test_images) == 30
    # Pixels survive the PNG round trip exactly, whatever the split.
    every = np.concatenate([data.train_images, data.test_images])
    assert sorted(map(bytes, every)) == sorted(map(bytes, images))
    again = load_data(tmp_path / "shapes", cache=cache)
    np.testing.assert_array_equal(again.test_images, data.test_images)
    other = load_data(tmp_path / "shapes", cache=cache, seed=1)
    assert not np.array_equal(other.test_images, data.test_images)


def test_train_and_test_subfolders_channels_and_size(tmp_path, cache):
    images, labels = draw_shapes(6, 16, rgb=True)
    write_folder(tmp_path / "d" / "train", images[::2], labels[::2])
    write_folder(tmp_path / "d" / "test", images[1::2], labels[1::2])
    data = load_data(tmp_path / "d", channels=1, image_size=(8, 12), cache=cache)
    assert not data.held_out and len(data.test_images) == 9
    assert data.train_images.shape == (9, 1, 8, 12)


def test_stratified_split_keeps_every_class_in_training():
    labels = np.array([0] * 10 + [1] * 2 + [2])
    held = stratified_split(labels, 0.2, seed=0)
    assert held[:10].sum() == 2 and held[10:12].sum() == 1 and not held[12]


def test_cache_is_used_and_invalidated_by_any_change(tmp_path, cache, monkeypatch):
    images, labels = draw_shapes(4, 12)
    paths = write_folder(tmp_path / "s", images, labels)
    first = load_folder(tmp_path / "s", cache=cache)
    assert len(list(cache.glob("*.npz"))) == 1 and len(list(cache.glob("*.json"))) == 1
    calls = []
    original = folder_module._decode_all
    monkeypatch.setattr(folder_module, "_decode_all", lambda *a: calls.append(1) or original(*a))
    np.testing.assert_array_equal(load_folder(tmp_path / "s", cache=cache).images, first.images)
    assert calls == []  # served from the cache
    # changed (same size, new time), added, removed: each one decodes again
    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_folder(tmp_path / "s", cache=cache)
    assert calls == [1]
    (paths[1].parent / "extra.png").write_bytes(paths[1].read_bytes())
    assert len(load_folder(tmp_path / "s", cache=cache).images) == 13 and calls == [1, 1]
    paths[2].unlink()
    assert len(load_folder(tmp_path / "s", cache=cache).images) == 12 and len(calls) == 3
    load_folder(tmp_path / "s", cache=cache, image_size=(6, 6))  # other options: own entry
    assert len(calls) == 4


def test_parallel_decoding_equals_serial(tmp_path, cache):
    images, labels = draw_shapes(30, 8, rgb=True)
    write_folder(tmp_path / "p", images, labels)
    serial = load_folder(tmp_path / "p", cache=cache / "a", workers=1)
    parallel = load_folder(tmp_path / "p", cache=cache / "b", workers=4)
    np.testing.assert_array_equal(serial.images, parallel.images)


def test_unreadable_files_are_skipped_and_named(tmp_path, cache, capsys):
    images, labels = draw_shapes(3, 8)
    write_folder(tmp_path / "u", images, labels)
    (tmp_path / "u" / "box" / "broken.png").write_bytes(b"not a png at all")
    data = load_folder(tmp_path / "u", cache=cache)
    assert len(data.images) == 9 and len(data.skipped) == 1
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("empty_class", "box: class folder holds no images"),
        ("no_classes", "no class folders"),
        ("mixed_sizes", "pass --image-size HxW"),
        ("all_broken", "no readable images"),
        ("missing", "no such file or directory"),
    ],
)
def test_folder_errors_name_the_file(tmp_path, cache, damage, message):
    root = tmp_path / "bad"
    images, labels = draw_shapes(2, 8)
    if damage != "no_classes":
        paths = write_folder(root, images, labels)
    else:
        root.mkdir()
    if damage == "empty_class":
        for path in (root / "box").iterdir():
            path.unlink()
    elif damage == "mixed_sizes":
        from PIL import Image

        Image.new("L", (9, 8)).save(root / "bar" / "wide.png")
    elif damage == "all_broken":
        for path in paths:
            path.write_bytes(b"garbage")
    elif damage == "missing":
        root = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=message):
        load_data(root, cache=cache)


def test_csv_with_and_without_header(tmp_path):
    images, labels = draw_shapes(5, 8)
    rows = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    plain, headed = tmp_path / "plain.csv", tmp_path / "headed.csv"
    np.savetxt(plain, rows, fmt="%d", delimiter=",")
    header = "label," + ",".join(f"pixel{i}" for i in range(64))
    np.savetxt(headed, rows, fmt="%d", delimiter=",", header=header, comments="")
    for path in (plain, headed):
        data = load_data(path, test_split=0.2)
        assert data.classes == ("0", "1", "2") and data.train_images.shape[1:] == (1, 8, 8)
        every = np.concatenate([data.train_images, data.test_images])
        assert sorted(map(bytes, every)) == sorted(map(bytes, images))


def test_a_grey_csv_read_as_rgb_repeats_its_grey(tmp_path):
    """--channels 3 on grey rows, as on a grey folder or .npz: each plane the grey."""
    images, labels = draw_shapes(10, 8)
    rows = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    np.savetxt(tmp_path / "grey.csv", rows, fmt="%d", delimiter=",")
    for size in (None, (8, 8)):
        data = load_data(tmp_path / "grey.csv", channels=3, image_size=size, hold_out=False)
        assert data.train_images.shape == (30, 3, 8, 8)
        np.testing.assert_array_equal(data.train_images, np.repeat(images, 3, axis=1))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,0,0,0\n", "3 pixels a row do not make a square image of 1 channel"),
        ("1,0,0,0,300\n", "line 1: pixels must be integers in 0..255"),
        ("-1,0,0,0,0\n", "line 1: label -1 is not a class index"),
        ("1,0,0,0,0\nnan,0,0,0,0\n", "line 2: label nan is not a class index"),
        ("1,0,0,0,0\ninf,0,0,0,0\n", "line 2: label inf is beyond the 65,536 classes read"),
        ("1e20,0,0,0,0\n", "line 1: label 1e\\+20 is beyond the 65,536 classes read"),
        ("label,a\n", "no rows"),
        ("1\n2\n", "the rows hold a label and no pixels"),
        ("1,x,0,0,0\n", "line 1: 'x' is not a number"),
        ("label,a,b,c,d\n1,0,0,0,0\n2,0,0,0\n", "line 3: 4 values, the lines before have 5"),
        ("label;pixels\n1;0;0;0;0\n", "line 2: '1;0;0;0;0' is not a number"),
        ("0," + ",".join(["0"] * 12) + "\n", "pass --channels 3 for colour images"),
    ],
)
def test_csv_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_data(path)


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw", "keras"])
def test_npz_layouts(tmp_path, layout):
    images, labels = draw_shapes(4, 8, rgb=layout != "nhw")
    x = {"nhw": images[:, 0], "nhwc": images.transpose(0, 2, 3, 1)}.get(layout, images)
    path = tmp_path / "d.npz"
    if layout == "keras":
        np.savez(path, x_train=x, y_train=labels, x_test=x[:3], y_test=labels[:3])
    else:
        np.savez(path, x=x, y=labels, classes=np.array(SHAPES))
    data = load_data(path)
    assert data.train_images.shape[1:] == ((1 if layout == "nhw" else 3), 8, 8)
    if layout == "keras":
        assert not data.held_out and len(data.test_images) == 3
    else:
        assert data.classes == SHAPES


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((2, 4, 4))}, "expected arrays 'x' and 'y'"),
        (
            {
                "x": np.zeros((2, 4, 4), np.uint8),
                "y": np.array([0, 5]),
                "classes": np.array(["a", "b"]),
            },
            "training label 5 is out of range for the 2 classes",
        ),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0])}, "2 images in 'x' but 1 labels"),
        ({"x": np.zeros((2, 4), np.uint8), "y": np.array([0, 1])}, "has shape"),
        ({"x": np.full((2, 4, 4), 2.0), "y": np.array([0, 1])}, r"must be finite and in \[0, 1\]"),
        ({"x": np.zeros((0, 4, 4), np.uint8), "y": np.zeros(0, int)}, "holds no images"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 10**8])},
         "label 100000000 is beyond the 65,536 classes read"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 1]), "classes": np.array("ab")},
         "'classes' must be a list of names"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0, 1]),
          "classes": np.array(["a", "a"])}, "'classes' names 'a' more than once"),
    ],
)  # fmt: skip
def test_npz_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message):
        load_data(path)


def test_preprocessing_and_lazy_batches():
    images, _ = draw_shapes(8, 8, rgb=True)
    prep = Preprocessing.fit(images, chunk=5)
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(prep.mean, x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(prep.std, x.std(axis=(0, 2, 3)), rtol=1e-5)
    lazy = ImageArray(images, prep)
    batch = lazy[np.array([3, 1])]
    assert batch.dtype == np.float32 and lazy.images.dtype == np.uint8
    np.testing.assert_allclose(
        batch.mean(axis=(0, 2, 3)), prep(images[[3, 1]]).mean(axis=(0, 2, 3))
    )
    np.testing.assert_allclose(np.asarray(lazy).mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert Preprocessing.from_json(prep.to_json()) == prep
    identity = Preprocessing.identity(3)
    np.testing.assert_array_equal(identity(images), images.astype(np.float32) * np.float32(1 / 255))


def test_a_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    images, labels = draw_shapes(3, 4)
    rows = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    text = "\n".join(",".join(str(v) for v in row) for row in rows)
    path = tmp_path / "bom.csv"
    path.write_text(text, encoding="utf-8-sig")
    data = load_data(path, test_split=0.3)
    assert len(data.train_images) + len(data.test_images) == len(images)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 2, 2, 0, 2, 0], "no training image has label 1 of 0..2"),
        ([0] * 6, "a classifier needs two classes or more"),
    ],
)
def test_training_needs_labels_that_number_two_classes_or_more(tmp_path, labels, message):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((6, 4, 4), np.uint8), y=np.array(labels))
    data = load_data(path, test_split=0.5)  # evaluate reads such data: a subset of classes
    with pytest.raises(DatasetError, match=message):
        check_training_labels(data)


def test_a_csv_with_its_label_last_is_refused_for_training(tmp_path):
    """MNIST's first pixel is always 0: read as the label, every image is of one class."""
    images, labels = draw_shapes(5, 8)
    images[:, 0, 0, 0] = 0
    path = tmp_path / "last.csv"
    np.savetxt(path, np.concatenate([images.reshape(15, -1), labels[:, None]], 1), fmt="%d",
               delimiter=",")  # fmt: skip
    with pytest.raises(DatasetError, match="is the label the first column"):
        check_training_labels(load_data(path))
    images[:, 0, 0, 0] = np.arange(15) // 2 * 2  # a first pixel that varies: labels with gaps
    np.savetxt(path, np.concatenate([images.reshape(15, -1), labels[:, None]], 1), fmt="%d",
               delimiter=",")  # fmt: skip
    with pytest.raises(DatasetError, match="without gaps .is the label the first column"):
        check_training_labels(load_data(path))


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (("train", "val"), "train: a split folder"),
        (("box/train", "box/test", "bar/train"), "/train: a split folder inside a class"),
    ],
)
def test_split_folders_in_other_layouts_are_refused(tmp_path, cache, layout, message):
    images, _ = draw_shapes(2, 8)
    for folder in layout:
        write_folder(tmp_path / "d" / folder, images[:2], np.array([0, 1]))
    with pytest.raises(DatasetError, match=message):
        load_folder(tmp_path / "d", cache=cache)


def test_images_in_subfolders_count_and_hidden_files_do_not(tmp_path, cache):
    images, labels = draw_shapes(4, 8)
    paths = write_folder(tmp_path / "d.v1", images, labels)
    nested = paths[0].parent / "more" / "x.png"
    nested.parent.mkdir()
    paths[1].rename(nested)
    (paths[0].parent / "._junk.png").write_bytes(b"AppleDouble")
    (paths[0].parent / ".hidden").mkdir()
    (paths[0].parent / ".hidden" / "y.png").write_bytes(b"not an image")
    found = load_folder(tmp_path / "d.v1", cache=cache)
    assert len(found.images) == len(images) and not found.skipped
    write_folder(tmp_path / "d.v2", images[:6], labels[:6])
    assert len(load_folder(tmp_path / "d.v2", cache=cache).images) == 6
    # Each folder its own cache files (once both became d.npz and d.json).
    assert len(list(cache.glob("d.v1-*.npz"))) == len(list(cache.glob("d.v2-*.npz"))) == 1


def test_a_dataset_is_named_after_its_folder_also_as_dot(tmp_path, monkeypatch, cache):
    images, labels = draw_shapes(4, 8)
    write_folder(tmp_path / "shapes", images, labels)
    monkeypatch.chdir(tmp_path / "shapes")
    assert load_data(".", cache=cache).name == "shapes"


def test_a_val_folder_beside_train_and_test_is_named_as_unread(tmp_path, cache):
    images, labels = draw_shapes(3, 8)
    for part in ("train", "test", "val"):
        write_folder(tmp_path / "d" / part, images, labels)
    with pytest.warns(UserWarning, match=r"d/val is not read: validation images are held out"):
        found = load_folder(tmp_path / "d", cache=cache)
    assert found.has_test_split and len(found.images) == 2 * len(images)


def test_npz_class_names_given_as_bytes_are_text(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 4, 4), np.uint8), y=np.arange(8) % 2,
             classes=np.array([b"cat", b"dog"]))  # fmt: skip
    assert load_data(tmp_path / "d.npz").classes == ("cat", "dog")
