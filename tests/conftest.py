from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """No test may read or write the user's dataset cache or data directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("FALTUNG_DATA", raising=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def mnist_dir() -> Path:
    """The shared MNIST copy developers and CI have; tests using it skip elsewhere."""
    path = Path(os.environ.get("FALTUNG_TEST_MNIST", MNIST_DIR))
    # The four IDX files, gzipped as published or plain as faltung's cache keeps them.
    name = "train-images-idx3-ubyte"
    if not ((path / name).exists() or (path / f"{name}.gz").exists()):
        pytest.skip(f"MNIST not present at {path}")
    return path


@pytest.fixture
def conv_in_chunks(monkeypatch):
    """A call makes every convolution run in chunks of one image (backward gathering each
    chunk again), whatever its channels and the thread it runs on."""
    from faltung.functional import conv_fast

    def force() -> None:
        monkeypatch.setattr(conv_fast, "CHUNK_ABOVE", 0)
        monkeypatch.setattr(conv_fast, "CHUNK_ABOVE_ONE_CHANNEL", 0)
        monkeypatch.setattr(conv_fast, "CHUNK_BYTES", 1)

    return force
