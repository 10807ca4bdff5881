"""keep_freed_memory: a block freed and taken again is not page-faulted in again (glibc only)."""

import os
import platform
import subprocess
import sys

import pytest

from pipeline.host_memory import SWITCH

# Takes a 96 MiB block from malloc as TensorFlow's CPU allocator does, writes every byte and frees
# it, three times; prints the minor page faults of the last time.
_PROBE = """
import ctypes, ctypes.util, resource
from pipeline.host_memory import keep_freed_memory
print(keep_freed_memory())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 96 * 2**20
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
"""


def _faults(switch: str) -> tuple[str, int]:
    output = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True,
                            env={**os.environ, SWITCH: switch}).stdout.split()
    return output[0], int(output[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    applied, faults = _faults("1")
    assert applied == "True"
    pages = 96 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert faults < pages // 100, faults
    # The default: the block is mapped anew and faulted in again each time (in 4 KiB or huge pages).
    default_applied, default_faults = _faults("0")
    assert default_applied == "False"
    assert default_faults > 10 * max(faults, 1), (default_faults, faults)
