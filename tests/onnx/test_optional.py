"""faltung.onnx imports without the onnx package and says how to get it only when used."""

from __future__ import annotations

import sys

import pytest

from faltung import Sequential
from faltung.layers import Dense


def test_without_onnx_the_functions_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    import faltung.onnx as fonnx

    model = Sequential([Dense(3, 2)], seed=0)
    with pytest.raises(fonnx.OnnxUnavailableError, match=r"pip install 'faltung\[onnx\]'"):
        fonnx.export(model, tmp_path / "m.onnx")
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ImportError, match="faltung\\[onnx\\]"):
        fonnx.load(tmp_path / "m.onnx")
