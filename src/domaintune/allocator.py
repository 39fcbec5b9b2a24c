"""glibc's malloc, told to keep freed memory for reuse while a model trains.

glibc hands every allocation above its mmap threshold (at most 32 MiB) to the kernel as a fresh
mapping and unmaps it when freed, so the next one faults in every page again. A training step
allocates such blocks each time: full fine-tuning of MiniLM makes a 47 MB dense gradient for the
word embeddings alone. With mmap off and the top of the heap kept, the same blocks are reused from
the heap, at the same peak memory (measured by `bench/allocator.py`; the figures are in
docs/results.md, "Keeping freed memory"). Elsewhere (macOS, musl, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
from functools import cache

# mallopt parameters and glibc's defaults for them (malloc/malloc.h, mallopt(3))
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_AT_TOP = 1 << 30  # freed memory at the top of the heap, up to 1 GiB, stays for the next step


@cache
def _glibc():
    """libc's handle where it is glibc (it has mallopt and malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed ones for reuse; False where not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_AT_TOP))


def give_back_freed_memory() -> None:
    """glibc's defaults again (setting them switches off its dynamic mmap threshold, which then
    stays where it stood), and the heap's free memory returned to the system."""
    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim(0)
