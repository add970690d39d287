"""glibc's malloc, set up for a process that allocates large arrays and frees them soon.

Every kernel allocates its output afresh and frees it a layer or a step later. glibc
serves an allocation above its mmap threshold (128 KiB at first, raised as such blocks
are freed) with fresh pages from the kernel, and returns memory freed at the top of its
heap to the kernel once more than twice that threshold lies there. Between two calls of
a network's forward pass in eval mode almost everything is freed, so each call faulted
its pages in again: 5,259 page faults (21 MB zeroed by the kernel) per call of the resnet
preset at batch 64. Training keeps its caches alive from step to step and faults less.

:func:`tune_malloc` serves arrays up to 64 MiB from the heap and keeps freed memory for
the next allocation instead of returning it. Measured in bench/NOTES.md; the command line
calls it before any work, and a script can too.
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 1 << 30

# The variables through which a user sets these thresholds; where one is set, it stands.
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Serve allocations up to ``mmap_threshold`` bytes from glibc's heap, and keep up to
    ``trim_threshold`` bytes of freed memory there for reuse.

    Process-wide and harmless to correctness: only where memory comes from changes.
    Returns whether the settings were applied: not where the C library is not glibc
    (macOS, Windows, musl), nor where the user set malloc's thresholds in the environment.
    """
    if any(variable in os.environ for variable in _USER_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Both or neither: setting either one ends glibc's adaptive mmap threshold, which
    # would then stay at 128 KiB and map every larger array afresh.
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )
