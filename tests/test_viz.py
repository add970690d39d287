"""Pictures: written in the format their file name asks for, atomically."""

from __future__ import annotations

import numpy as np
import pytest

from faltung.viz import plot_confusion

pytest.importorskip("matplotlib")


@pytest.mark.parametrize(
    ("name", "magic"), [("cm.png", b"\x89PNG"), ("cm.pdf", b"%PDF"), ("cm.svg", b"<?xml")]
)
def test_the_extension_names_the_format(tmp_path, name, magic):
    written = plot_confusion(np.eye(3, dtype=np.int64) * 5, ["a", "b", "c"], tmp_path / name)
    assert written == tmp_path / name and written.read_bytes().startswith(magic)


def test_an_unknown_extension_or_a_folder_is_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(ValueError, match=r"cm.xyz: matplotlib writes no .xyz pictures; .*\.png"):
        plot_confusion(np.eye(2, dtype=np.int64), ["a", "b"], tmp_path / "cm.xyz")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="folder is a folder; give the file to write"):
        plot_confusion(np.eye(2, dtype=np.int64), ["a", "b"], tmp_path / "folder")
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]  # no temporary file left


def test_a_name_is_checked_before_any_work(tmp_path):
    from faltung.viz import picture_format

    assert picture_format(tmp_path / "cm.PDF") == "pdf" and picture_format(tmp_path / "cm") == "png"
    with pytest.raises(ValueError, match="the directory .*missing does not exist"):
        picture_format(tmp_path / "missing" / "cm.png")
    with pytest.raises(ValueError, match="writes no .pgf pictures"):  # it would need LaTeX
        picture_format(tmp_path / "cm.pgf")
