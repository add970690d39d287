"""Finding, verifying, downloading and caching dataset files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from faltung.datasets import DatasetError, load_dataset
from faltung.datasets.fetch import locate

from ..synthetic import NAMES, install_catalogue, synthetic_arrays, write_dataset


def test_loads_a_directory_gzip_or_not(tmp_path, monkeypatch):
    for compress in (True, False):
        directory = tmp_path / str(compress)
        info = write_dataset(directory, compress=compress)
        install_catalogue(monkeypatch, info)
        data = load_dataset("mnist", directory)
        assert data.train_images.shape == (60, 1, 28, 28) and data.train_images.dtype == np.float32
        assert 0 <= data.train_images.min() and data.train_images.max() == 1.0
        assert data.train_labels.dtype == np.int64 and data.test_images.shape == (20, 1, 28, 28)
        raw = load_dataset("mnist", directory, normalize=False)
        assert raw.train_images.dtype == np.uint8


def test_environment_variable_names_the_directory(tmp_path, monkeypatch):
    install_catalogue(monkeypatch, write_dataset(tmp_path / "d"))
    monkeypatch.setenv("FALTUNG_DATA", str(tmp_path / "d"))
    assert len(load_dataset("mnist").train_labels) == 60


def test_missing_file_in_user_directory(tmp_path, monkeypatch):
    info = write_dataset(tmp_path)
    install_catalogue(monkeypatch, info)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def test_checksum_mismatch_names_file_expected_and_fix(tmp_path, monkeypatch):
    info = write_dataset(tmp_path, compress=False)
    install_catalogue(monkeypatch, info)
    path = tmp_path / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", tmp_path)
    message = str(error.value)
    assert str(path) in message and info.files["train_labels"].md5 in message
    assert "delete it and fetch it again" in message


def test_another_datasets_file_is_named_as_such(tmp_path, monkeypatch):
    from faltung.datasets.catalog import DataFile

    mnist = write_dataset(tmp_path, compress=False)
    fashion = type(mnist)(
        "fashion-mnist",
        {role: DataFile(spec.name, "0" * 32, None) for role, spec in mnist.files.items()},
        mnist.mirrors,
        mnist.classes,
    )
    install_catalogue(monkeypatch, mnist)
    install_catalogue(monkeypatch, fashion)
    with pytest.raises(DatasetError) as error:
        load_dataset("fashion-mnist", tmp_path)
    message = str(error.value)
    assert "this is mnist's train-images-idx3-ubyte, not fashion-mnist's" in message
    assert "pass --dataset mnist" in message and "delete it" not in message


def test_header_disagreeing_with_payload(tmp_path, monkeypatch):
    arrays = synthetic_arrays()
    info = write_dataset(tmp_path, arrays, compress=False)
    path = tmp_path / NAMES["test_images"]
    data = bytearray(path.read_bytes())
    data[7] = 19  # claims 19 images instead of 20 (big-endian count at bytes 4..7)
    path.write_bytes(bytes(data))
    import hashlib

    from faltung.datasets.catalog import DataFile

    files = dict(info.files)
    files["test_images"] = DataFile(
        NAMES["test_images"], hashlib.md5(bytes(data)).hexdigest(), None
    )
    install_catalogue(monkeypatch, type(info)(info.name, files, info.mirrors, info.classes))
    with pytest.raises(DatasetError, match="has trailing bytes"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.update(test_labels=a["test_labels"][:-1]), "19 labels but .* has 20 images"),
        (lambda a: a["train_labels"].__setitem__(0, 10), r"label 10 outside 0\.\.9"),
        (
            lambda a: a.update(train_labels=a["train_labels"].astype(np.int32)),
            "expected uint8 labels",
        ),
    ],
    ids=["count", "range", "dtype"],
)
def test_inconsistent_dataset_is_refused(tmp_path, monkeypatch, change, message):
    arrays = synthetic_arrays()
    change(arrays)
    install_catalogue(monkeypatch, write_dataset(tmp_path, arrays))
    with pytest.raises(DatasetError, match=message):
        load_dataset("mnist", tmp_path)


def fake_mirror(source: Path, fail: int = 0, corrupt: bool = False):
    """A downloader that serves files from ``source`` (after ``fail`` refusals)."""
    calls = []

    def download(url: str, target: Path) -> None:
        calls.append(url)
        if len(calls) <= fail:
            raise OSError("connection refused")
        blob = (source / url.rsplit("/", 1)[1]).read_bytes()
        target.write_bytes(blob[:-10] if corrupt else blob)

    download.calls = calls
    return download


def test_download_into_cache_then_reuse(tmp_path, monkeypatch):
    info = write_dataset(tmp_path / "mirror")
    info = type(info)(
        info.name, info.files, ("http://a.invalid/", "http://b.invalid/"), info.classes
    )
    install_catalogue(monkeypatch, info)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FALTUNG_DATA", raising=False)
    downloader = fake_mirror(tmp_path / "mirror", fail=1)
    monkeypatch.setattr("faltung.datasets.mnist.progress_downloader", downloader)
    load_dataset("mnist", downloader=downloader)
    cached = sorted(p.name for p in (tmp_path / "cache" / "faltung" / "mnist").iterdir())
    assert cached == sorted(f"{n}.gz" for n in NAMES.values())  # no temporary files left
    assert len(downloader.calls) == 5  # one refusal, then four files from the second mirror
    load_dataset("mnist", downloader=downloader)
    assert len(downloader.calls) == 5  # served from the cache


def test_corrupt_download_is_neither_cached_nor_used(tmp_path, monkeypatch):
    info = write_dataset(tmp_path / "mirror")
    install_catalogue(monkeypatch, info)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="could not obtain mnist train-images-idx3-ubyte"):
        locate(info, "train_images", None, cache, fake_mirror(tmp_path / "mirror", corrupt=True))
    assert list((cache / "mnist").iterdir()) == []


def test_corrupted_cache_file_is_fetched_again(tmp_path, monkeypatch, capsys):
    info = write_dataset(tmp_path / "mirror")
    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    (cache / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"junk"))
    content = locate(info, "train_labels", None, cache, fake_mirror(tmp_path / "mirror"))
    assert len(content) == 8 + 60
    assert "fetching it again" in capsys.readouterr().err


def test_no_source_at_all_explains_the_fix(tmp_path):
    info = write_dataset(tmp_path / "mirror")
    with pytest.raises(DatasetError, match="pass their directory with --data DIR"):
        locate(info, "train_labels", None, tmp_path / "cache", fake_mirror(tmp_path, fail=99))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_any_correct_copy_is_accepted_however_compressed(tmp_path):
    """Debian recompresses Fashion-MNIST without the file name in the gzip header (24 bytes
    shorter); the decompressed content is what must match, compressed or not."""
    from dataclasses import replace

    from faltung.datasets.catalog import FASHION_MNIST
    from faltung.datasets.idx import encode_idx

    content = encode_idx(np.arange(12, dtype=np.uint8) % 10)
    info = replace(write_dataset(tmp_path / "official"), name="fashion-mnist")
    spec = replace(info.files["train_labels"], md5=hashlib.md5(content).hexdigest())
    info = replace(info, files={**info.files, "train_labels": spec})
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / spec.name).write_bytes(content)
    recompressed = tmp_path / "debian"
    recompressed.mkdir()
    (recompressed / f"{spec.name}.gz").write_bytes(gzip.compress(content, 9, mtime=12345))
    for directory in (plain, recompressed):
        assert locate(info, "train_labels", directory) == content
    assert FASHION_MNIST.files["train_images"].md5 == "f4a8712d7a061bf5bd6d2ca38dc4d50a"


def test_system_copy_is_used_before_downloading(tmp_path, monkeypatch):
    from faltung.datasets import fetch

    info = write_dataset(tmp_path / "system" / "mnist")
    monkeypatch.setattr(fetch, "SYSTEM_DATA_DIRS", (tmp_path / "system",))
    content = locate(info, "train_labels", None, tmp_path / "cache", fake_mirror(tmp_path, 99))
    assert content[:4] == b"\x00\x00\x08\x01"


def test_not_found_names_the_debian_package(tmp_path, monkeypatch):
    from dataclasses import replace

    from faltung.datasets import fetch

    monkeypatch.setattr(fetch, "SYSTEM_DATA_DIRS", (tmp_path / "nothing",))
    info = replace(write_dataset(tmp_path / "mirror"), debian_package="dataset-fashion-mnist")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        locate(info, "train_labels", None, tmp_path / "cache", fake_mirror(tmp_path, fail=99))


def test_debian_fashion_mnist_loads():
    directory = Path("/usr/share/datasets/fashion-mnist")
    if not (directory / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = load_dataset("fashion-mnist", directory)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


def test_real_mnist_loads_and_verifies(mnist_dir):
    data = load_dataset("mnist", mnist_dir)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_labels.shape == (10000,)
    assert np.bincount(data.train_labels).tolist()[:3] == [5923, 6742, 5958]
