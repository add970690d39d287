"""docs/tutorial.ipynb must run from top to bottom on the code under test, so it never goes stale."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
SRC = ROOT / "src"


def test_committed_tutorial_shows_its_outputs():
    """GitHub renders the committed file: every code cell ran, in order, without error."""
    assert NOTEBOOK.stat().st_size < 1_000_000
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1))
    for cell in cells:
        assert all(output["output_type"] != "error" for output in cell["outputs"])
    assert any("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])


def test_tutorial_notebook_runs(mnist_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    # A kernel on this very interpreter, importing faltung from this checkout first: the
    # installed "python3" kernel may run another Python, or another faltung.
    kernel_dir = tmp_path / "jupyter" / "kernels" / "faltung-test"
    kernel_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "faltung test", "language": "python"}
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    inherited = [part for part in os.environ.get("PYTHONPATH", "").split(os.pathsep) if part]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), *inherited]))
    monkeypatch.setenv("FALTUNG_DATA", str(mnist_dir))
    # One BLAS thread: the notebook's small matrix products gain nothing from more, and
    # OpenBLAS threads waiting for busy cores made the training cell several times slower
    # on a loaded 2-core machine.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    notebook.cells.append(nbformat.v4.new_code_cell("import faltung; print(faltung.__file__)"))
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="faltung-test",
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first cell that fails

    imported_from = notebook.cells[-1].outputs[0]["text"].strip()
    assert Path(imported_from).resolve().is_relative_to(SRC), imported_from
    figures = sum(
        "image/png" in output.get("data", {}) for cell in code_cells for output in cell.outputs
    )
    assert figures >= 8, f"the tutorial drew {figures} figures"
    printed = "".join(output.get("text", "") for cell in code_cells for output in cell.outputs)
    assert "gradcheck passed" in printed
