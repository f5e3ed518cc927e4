"""Large buffers kept for reuse instead of faulted in anew for every image.

glibc's malloc serves an allocation above its mmap threshold straight from the kernel and
returns it on free, and gives back the top of its heap once more than twice that is free
there. An upstream image is a few such buffers (the body, its JSON string, the decoded
bytes): with the defaults a 4 MB image cost ~5,000 page faults and 25 ms of kernel time,
two thirds of the gateway's CPU for it (bench/RESULTS.md, image path). With both
thresholds raised, those pages stay in the process for the next image; what is kept is
bounded by the peak of images in flight, as it would be on any allocator that caches.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling on 64-bit: larger ones still use mmap
TRIM_THRESHOLD = 64 * 1024 * 1024
OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_large_buffers() -> bool:
    """Raise glibc's thresholds for this process; False where it does not apply (another
    C library, or an operator who set them through glibc's environment variables)."""
    if platform.libc_ver()[0] != "glibc" or any(k in os.environ for k in OPERATOR_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
