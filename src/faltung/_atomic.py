"""Atomic file writes: a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The rename is atomic on POSIX and Windows, so readers see the old file or the new one,
    never a mixture; on any error the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    # Checked first, else the error would name the temporary file.
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target}: the directory {target.parent} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; give the file to write")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        # mkstemp creates 0600 files; give the result the permissions open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
