"""Model files from strangers: never executed, always validated, never half-applied."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faltung import Sequential
from faltung.io import HEADER_KEY, ModelFileError, load_model, load_weights, save_model
from faltung.layers import Conv2D, Dense, Flatten


def model(width=2):
    return Sequential([Conv2D(1, width, 3), Flatten(), Dense(width * 4 * 4, 3)], seed=0)


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("m") / "m.npz"
    save_model(model(), path)
    return path.read_bytes()


def rewrite(data: bytes, change) -> bytes:
    """Load the arrays of a model file, let ``change`` edit them, write a new file."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def header_edit(**fields):
    def change(arrays):
        header = json.loads(arrays[HEADER_KEY].tobytes())
        header.update(fields)
        arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    return change


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.pop(HEADER_KEY), "no __faltung__ header"),
        (lambda a: a.update({HEADER_KEY: np.frombuffer(b"{not json", np.uint8)}), "corrupt header"),
        (header_edit(format="something-else"), "expected a faltung-model file"),
        (header_edit(format_version=99), "version 99"),
        (header_edit(faltung_version="99.0.0"), "newer than this faltung .*; upgrade faltung"),
        (header_edit(faltung_version=None), "no valid faltung version"),
        (header_edit(architecture=[{"name": "x", "type": "Evil", "args": {}}]), "cannot rebuild"),
        (header_edit(architecture=[{"name": "c", "type": "Conv2D",
                                    "args": {"in_channels": 1, "out_channels": 2,
                                             "kernel_size": 3, "bogus": 1}}]), "cannot rebuild"),
        (lambda a: a.pop("0.bias"), r"missing \['0.bias'\]"),
        (lambda a: a.update({"2.weight": a["2.weight"][:, :-1]}), "2.weight: shape"),
        (lambda a: a.update({"2.weight": a["2.weight"].astype(np.float64)}), "2.weight: dtype float64"),
        (lambda a: a.update({"0.weight": a["0.weight"] * np.nan}), "NaN"),
        (lambda a: a.update({"0.weight": np.array(["text"])}), "0.weight"),
    ],
    ids=["no-header", "bad-json", "format", "version", "newer-faltung", "no-faltung-version", "unknown-layer", "bad-args", "missing",
         "shape", "dtype", "nan", "text-array"],
)  # fmt: skip
def test_tampered_files_are_refused_with_a_reason(tmp_path, valid_bytes, change, message):
    path = tmp_path / "m.npz"
    path.write_bytes(rewrite(valid_bytes, change))
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_pickled_object_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"0.weight": np.array([object()], dtype=object)})
    with pytest.raises(ModelFileError, match="not a readable faltung file"):
        load_model(path)


def test_failed_load_leaves_the_model_unchanged(tmp_path, valid_bytes):
    target = model()
    target["2"].params["weight"][:] = 7.0
    before = target.state_dict()
    path = tmp_path / "m.npz"
    path.write_bytes(rewrite(valid_bytes, lambda a: a.update({"2.bias": a["2.bias"][:2]})))
    with pytest.raises(ModelFileError):
        load_weights(target, path)
    assert all(np.array_equal(v, target.state_dict()[k]) for k, v in before.items())


def test_header_records_version_and_architecture(tmp_path):
    from faltung import __version__
    from faltung.io import read_model_file

    header, _ = read_model_file(save_model(model(), tmp_path / "m.npz"))
    assert header["faltung_version"] == __version__ and header["dtype"] == "float32"
    assert [entry["type"] for entry in header["architecture"]] == ["Conv2D", "Flatten", "Dense"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_model_file_errors(tmp_path, data):
    path = tmp_path / "random.npz"
    path.write_bytes(data)
    with pytest.raises(ModelFileError):
        load_model(path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_model_files_raise_only_model_file_errors(tmp_path, valid_bytes, data):
    blob = bytearray(valid_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(blob) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path = tmp_path / "mutated.npz"
    path.write_bytes(bytes(blob))
    try:
        loaded, _ = load_model(path)
    except ModelFileError:
        return
    # A mutation that survives every check (say, in a zip comment) must still give a model
    # that works.
    assert loaded(np.zeros((1, 1, 6, 6), np.float32)).shape == (1, 3)


def test_a_member_flagged_as_encrypted_is_a_corrupt_file(tmp_path, valid_bytes):
    # Found by the mutation test above: one flipped bit made zipfile ask for a password.
    blob = bytearray(valid_bytes)
    entry = blob.index(b"PK\x01\x02")  # the first central directory entry
    blob[entry + 8] |= 1  # general purpose flag bit 0: encrypted
    path = tmp_path / "encrypted.npz"
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="not a readable faltung file"):
        load_model(path)


def test_zip_with_a_directory_traversal_name_is_just_refused(tmp_path):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../escape.npy", b"junk")
    with pytest.raises(ModelFileError):
        load_model(path)
    assert not (tmp_path.parent.parent / "escape.npy").exists()
