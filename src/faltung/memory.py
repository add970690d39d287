"""glibc's malloc, set up for a process that allocates large arrays and frees them soon.

Every kernel allocates its output afresh and frees it a layer or a step later. By default
glibc serves an allocation above its mmap threshold with fresh pages from the kernel; the
threshold starts at 128 KiB and rises as such blocks are freed, but never above 32 MiB.
It also returns memory freed at the top of its heap to the kernel once more than its trim
threshold lies there (128 KiB at first, then twice the mmap threshold). A network's
forward pass in eval mode frees almost everything it allocated before the next call, so
without tuning each call faults its pages in again, and the kernel zeroes them again.
Training faults far less: its caches stay alive from one step to the next.

:func:`tune_malloc` serves arrays up to 64 MiB from the heap and keeps up to 1 GiB of freed
memory there for the next allocation. The price is that a process's resident memory stays
near its peak instead of shrinking between calls. The ``faltung`` command calls it before
any work; a script can call it too. ``FALTUNG_MALLOC=default`` leaves malloc alone, as do a
user's own malloc thresholds (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or
``glibc.malloc.mmap_threshold`` / ``trim_threshold`` in ``GLIBC_TUNABLES``).
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 1 << 30
# Older glibc refuses an mmap threshold above 32 MiB on 64-bit systems (mallopt(3)).
FALLBACK_MMAP_THRESHOLD = 32 << 20

_INT_MAX = 2**31 - 1  # mallopt takes a C int


def is_glibc() -> bool:
    """Whether this process runs on glibc (not musl, macOS or Windows)."""
    return bool(hasattr(os, "confstr") and _confstr("CS_GNU_LIBC_VERSION"))


def _confstr(name: str) -> str | None:
    try:
        return os.confstr(name)
    except (ValueError, OSError):  # a name this platform does not know
        return None


def user_settings() -> str | None:
    """The environment variable by which the user chose malloc's thresholds, if any."""
    if os.environ.get("FALTUNG_MALLOC") == "default":
        return "FALTUNG_MALLOC"
    for variable in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        if variable in os.environ:
            return variable
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    keys = {item.partition("=")[0] for item in tunables.split(":")}
    if keys & {"glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold"}:
        return "GLIBC_TUNABLES"
    return None


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Serve allocations up to ``mmap_threshold`` bytes from glibc's heap, and keep up to
    ``trim_threshold`` bytes of freed memory there for reuse.

    Process-wide and one-way; it changes where memory comes from, never a result.
    Returns whether it applied: not off glibc, nor where the user chose malloc's thresholds
    (see the module's docs). An allocator preloaded in glibc's place (jemalloc, tcmalloc)
    does not read these settings, though this still returns True there.
    """
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not 0 <= value <= _INT_MAX:
            raise ValueError(f"{name} must be between 0 and {_INT_MAX} bytes, got {value}")
    if not is_glibc() or user_settings() is not None:
        return False
    mallopt = ctypes.CDLL(None).mallopt  # glibc's symbols are in the process's global scope
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Setting either threshold freezes the other at its current value, so both are set,
    # the mmap threshold first: if glibc refuses it (even at the fallback), nothing changed.
    if not mallopt(M_MMAP_THRESHOLD, mmap_threshold) and not mallopt(
        M_MMAP_THRESHOLD, min(mmap_threshold, FALLBACK_MMAP_THRESHOLD)
    ):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))  # glibc always accepts this one
