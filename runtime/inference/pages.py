"""Hand back the zero pages llama.cpp makes resident when it creates a context.

llama.cpp clears a new context's KV cache with memset. That commits every page of every slot's whole context before a
token is decoded: 4 slots of 4,096 SmolLM2 tokens are 360 MiB. A page that still holds only zeros is released with
madvise(MADV_DONTNEED): it reads as zeros, as before, and becomes resident again when a cell is written to it. A slot's
memory then grows with what it holds, up to the same ceiling (the README's memory section measures both ends).
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PAGE = mmap.PAGESIZE
_CHUNK = 256 * PAGE
_ZERO = bytes(_CHUNK)

# A page must not be written between its check and its release. This runs in a model runner (runner.py), whose one
# Python thread is the one creating the context, while llama.cpp's threads are idle; the mappings checked are only
# those the new context brought.
_libc = ctypes.CDLL(None)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.madvise.restype = ctypes.c_int
_libc.memcmp.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
_libc.memcmp.restype = ctypes.c_int
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_libc.mincore.restype = ctypes.c_int


@contextmanager
def zero_pages_released() -> Iterator[None]:
    """Around the creation of a llama.cpp context: release what it committed and still holds only zeros."""
    before = anonymous_regions()
    yield
    release_zero_pages(before)


def anonymous_regions() -> set[tuple[int, int]]:
    """The process's writable anonymous mappings (no file, no [heap] or [stack]), as (start, end); none without /proc
    (macOS), where nothing is released."""
    regions = set()
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return regions
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[1].startswith("rw"):
            start, end = fields[0].split("-")
            regions.add((int(start, 16), int(end, 16)))
    return regions


def release_zero_pages(before: set[tuple[int, int]]) -> int:
    """Release the resident all-zero pages of the anonymous mappings not in `before`; returns the bytes released.

    A page that is not resident is left alone: it may be swapped out, holding data.
    """
    released = 0
    for start, end in sorted(anonymous_regions() - before):
        run = start  # where the current run of releasable pages began
        for chunk in range(start, end, _CHUNK):
            size = min(_CHUNK, end - chunk)
            resident = _resident(chunk, size)
            if all(resident) and _zero(chunk, size):
                continue
            for i, page in enumerate(range(chunk, chunk + size, PAGE)):
                if not (resident[i] and _zero(page, PAGE)):
                    released += _release(run, page)
                    run = page + PAGE
        released += _release(run, end)
    return released


def _resident(start: int, size: int) -> list[bool]:
    vector = (ctypes.c_ubyte * (size // PAGE))()
    if _libc.mincore(start, size, vector) != 0:
        return [False] * len(vector)
    return [bool(b & 1) for b in vector]


def _zero(start: int, size: int) -> bool:
    return _libc.memcmp(start, _ZERO, size) == 0


def _release(start: int, end: int) -> int:
    if end <= start or _libc.madvise(start, end - start, mmap.MADV_DONTNEED) != 0:
        return 0
    return end - start
