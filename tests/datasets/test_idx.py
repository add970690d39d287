"""The IDX reader: round trips, and every malformed file a clear DatasetError."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faltung.datasets import DatasetError, read_idx, write_idx
from faltung.datasets.idx import encode_idx, parse_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, compress, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a.idx"
    write_idx(path, array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    data = encode_idx(np.zeros((2, 2), np.uint8))
    (tmp_path / "plain.gz").write_bytes(data)
    (tmp_path / "packed").write_bytes(gzip.compress(data))
    assert read_idx(tmp_path / "plain.gz").shape == (2, 2)
    assert read_idx(tmp_path / "packed").shape == (2, 2)


GOOD = encode_idx(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "too short"),
        (b"\x01\x00\x08\x01" + GOOD[4:], "not an IDX file"),
        (b"\x00\x00\x07\x02" + GOOD[4:], "unknown IDX data type"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (GOOD[:6], "truncated IDX header"),
        (GOOD[:-1], "truncated: header says shape (3, 4)"),
        (GOOD + b"\x00", "has trailing bytes"),
    ],
    ids=["empty", "magic", "type", "ndim", "header", "truncated", "trailing"],
)
def test_malformed_files_name_the_problem(data, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_idx(data, "some-file")


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(GOOD * 100)[:-20])
    with pytest.raises(DatasetError, match=f"{path}: corrupt or truncated gzip"):
        read_idx(path)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_dataset_errors(data):
    try:
        parse_idx(data)
    except DatasetError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.booleans())
def test_mutated_files_raise_only_dataset_errors_or_parse(position, value, truncate):
    data = bytearray(GOOD)
    data[position] = value
    if truncate:
        data = data[:position]
    try:
        array = parse_idx(bytes(data))
    except DatasetError:
        return
    assert array.size * array.itemsize == len(data) - 4 - 4 * array.ndim
