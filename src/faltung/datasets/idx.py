"""The IDX format of MNIST and Fashion-MNIST (LeCun et al.), gzip-compressed or not.

Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then
each dimension as a big-endian uint32; the payload follows in C order. Every field is
checked against the file size, so a truncated or padded file is an error, not a reshape.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IDX_CODES = {np.dtype(dtype).newbyteorder("="): code for code, dtype in IDX_TYPES.items()}


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The decompressed content of ``path``: gzip is detected by its magic bytes, not its name."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror or error})") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(
            f"{path}: corrupt or truncated gzip data ({error}); delete the file and fetch it again"
        ) from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array (native byte order), checking every header field."""
    if len(data) < 4:
        raise DatasetError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"{source}: not an IDX file (magic number {data[:4].hex()} should start with 0000)"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        raise DatasetError(f"{source}: unknown IDX data type 0x{type_code:02x}")
    if ndim == 0:
        raise DatasetError(f"{source}: IDX header declares zero dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DatasetError(f"{source}: truncated IDX header ({len(data)} of {header_size} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = header_size + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise DatasetError(
            f"{source}: {problem}: header says shape {shape} ({expected} bytes), "
            f"file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    code = IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, IDX_TYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` as IDX (gzip when ``compress``), atomically."""
    data = encode_idx(array)
    with atomic_write(path) as handle:
        handle.write(gzip.compress(data, mtime=0) if compress else data)
