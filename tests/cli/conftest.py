from __future__ import annotations

import pytest

from ..synthetic import install_catalogue, synthetic_arrays, write_dataset


@pytest.fixture
def synthetic_dir(tmp_path, monkeypatch):
    """A small MNIST-shaped dataset on disk, with the catalogue's checksums made to match."""
    directory = tmp_path / "data"
    install_catalogue(monkeypatch, write_dataset(directory, synthetic_arrays(200, 50)))
    return directory
