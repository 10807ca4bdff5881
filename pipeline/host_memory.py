"""Keep memory TensorFlow frees inside the process (glibc ``malloc``), so steps stop page-faulting.

TensorFlow's CPU allocator takes every tensor from ``malloc`` and frees it after its last use, so
a training step allocates and frees its activations, gradients and logits anew each time. glibc
serves large blocks with fresh ``mmap`` mappings and unmaps them on ``free``, and hands freed heap
memory back to the kernel (trim, ``MADV_DONTNEED``); the next step then page-faults all of it in
again, the kernel zeroing each page. At the tiny config's step (batch 32 x 128 tokens) that was
148,550 minor faults per step, and the step took 797 ms against 438 ms without them
(docs/pretrain_speed.md).

:func:`keep_freed_memory` sets three ``mallopt`` parameters: no ``mmap`` for blocks
(``M_MMAP_MAX`` 0), so every block comes from a heap; no trimming (``M_TRIM_THRESHOLD`` as high
as it goes), so freed heap memory stays mapped for the next step; and one arena (``M_ARENA_MAX``
1), whose heap, unlike a per-thread arena's (at most 64 MiB), holds blocks of any size. The
process's resident memory then stays at its peak instead of falling between steps. Only glibc has these parameters;
elsewhere nothing is changed. ``TRIMBERT_KEEP_FREED_MEMORY=0`` turns it off (to compare, or for a
long-lived process whose peak should not stay resident).
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int
SWITCH = "TRIMBERT_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Applies the module's ``mallopt`` settings to this process; True if they were applied."""
    if os.environ.get(SWITCH, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the process's own symbols, glibc's mallopt among them
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM))
    return all([bool(libc.mallopt(parameter, value)) for parameter, value in settings])
