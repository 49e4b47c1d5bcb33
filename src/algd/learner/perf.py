"""Process-level speed settings for the learner.

``keep_heap()``: glibc returns every freed block above ``M_MMAP_THRESHOLD`` (dynamic, 128 KiB … 32 MiB) to the kernel
and gets fresh zeroed pages on the next allocation, so each activation tensor of an update ([4, 1024, 256] fp32 =
4 MiB) pays page faults on first touch. Raising the mmap threshold and the trim threshold keeps freed blocks in the
heap for reuse: one ALGD update ran ≈ 20 % faster on the 2-core CPU machines (see docs/performance.md); the cost is
that the process keeps its peak heap. No effect (and no error) outside glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_heap(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed tensor memory in the heap (idempotent). Returns whether the settings were applied."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
        )
    except (OSError, AttributeError):
        _done = False
    return _done
