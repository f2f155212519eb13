"""glibc's malloc set for the agent before it starts any thread: one arena, a fixed mmap threshold;
and freed memory handed back after a start-up step that freed much (``release_freed``).

Two of glibc's defaults suit programs with many busy threads and big short-lived buffers, not an
agent with one loop and a few threads that work briefly (module imports, the eBPF load, /sys reads):

* every thread that allocates gets an arena of its own (up to 8 per core), and what a thread
  frees stays resident in its arena: the import and the eBPF-load threads left ~1 MB;
* the mmap threshold rises to the size of any mapped block freed (reading the larger .pyc files
  at import frees blocks of 150-400 kB), and the heap's free top is handed back only beyond twice
  that: memory freed at start-up stayed resident.

With one arena and the threshold fixed at glibc's initial 128 kB (which also fixes the trim
threshold at its 128 kB default), the eBPF agent's peak RSS was ~1.4 MB lower.  The hot path
allocates no block that large, so no sample costs more.  Free memory inside the heap (between
live blocks) is handed back only by ``malloc_trim``: ``release_freed`` does it once libbpf has
closed its object after a load, before the sampler's ring buffer is mapped (2 MB, the last step of
start-up), ~1 MB less again.  The settings are skipped when the environment tunes malloc itself
(``MALLOC_*``, ``GLIBC_TUNABLES``); each call is skipped where the C library lacks it.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""mallopt parameters, from glibc's malloc.h."""
MMAP_THRESHOLD = 128 * 1024
_LIBC = ctypes.CDLL(None)


def tune_malloc() -> None:
    """Apply the settings above, unless the environment sets its own."""
    if any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ):
        return
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_freed() -> None:
    """Give the kernel the whole pages of freed memory anywhere in the heap (``malloc_trim(0)``; a few
    milliseconds), where the C library has it."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
