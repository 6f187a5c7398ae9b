"""Keep large numpy buffers in the C heap between kernel calls (glibc only).

The compiled choice kernels allocate their dense ``(week, item, class)``
utilities afresh on every call (73 MB on the embedded data's 300 fitted
households and 8 classes). glibc serves any block above its mmap threshold
(at most 32 MB by default) with a fresh ``mmap`` and returns it to the system
on free, so every call pays a page fault per 4 kB page: measured, filling a
new 73 MB array costs 41 ms against 2.4 ms for an array already touched, and
the page faults were about half the kernel's dense forward pass.

:func:`keep_large_buffers` raises the mmap and trim thresholds (freed blocks
stay in the heap and the next call reuses them) and keeps one arena (so a
block freed by one thread is reused by another: without it, thread arenas
cannot hold a block this large and fall back to ``mmap``). The cost: memory
freed by large arrays is kept by the process for reuse instead of returned
to the system, so the resident size stays near its peak. The command line
calls it once at start; set ``BAYES_RETAIL_MALLOC=system`` to leave glibc's
defaults. Elsewhere (other C libraries, other systems) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: ``mallopt`` parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Blocks up to this size come from the heap, and this much free memory at its top is kept.
HEAP_THRESHOLD_BYTES = 1 << 30
#: Environment variable that, set to ``system``, leaves the C library's defaults.
ENVIRONMENT_VARIABLE = "BAYES_RETAIL_MALLOC"


def keep_large_buffers(*, threshold_bytes: int = HEAP_THRESHOLD_BYTES) -> bool:
    """Ask glibc to serve blocks up to ``threshold_bytes`` from one heap and keep them when freed.

    Returns
    -------
    bool
        True when every setting was accepted; False where there is no glibc
        ``mallopt``, where it refused a setting, or where
        ``BAYES_RETAIL_MALLOC=system`` asks to leave the defaults.
    """
    if int(threshold_bytes) <= 0:
        raise ValueError(f"threshold_bytes must be positive, got {threshold_bytes!r}")
    if os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    settings = ((M_MMAP_THRESHOLD, int(threshold_bytes)), (M_TRIM_THRESHOLD, int(threshold_bytes)), (M_ARENA_MAX, 1))
    accepted = [bool(mallopt(option, value)) for option, value in settings]  # every one tried, even after a refusal
    return all(accepted)


def _glibc_mallopt():
    """glibc's ``mallopt`` as a ctypes function, or None (musl and others lack it or only stub it)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (present in glibc only)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
