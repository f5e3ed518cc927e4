"""Memory shared by the processes of one node (`imagegate serve --processes N`).

The supervising process creates it before it starts its children and hands each of them the
same anonymous file; they map it and meet there, without Redis and without a round trip to
anyone: a credential-change counter, and a table of rate-limit windows.

Updates take a POSIX record lock (``lockf``) on the file: it is per process, so children
holding one descriptor still exclude each other, and the kernel drops it when its holder
dies, even by ``kill -9``; nobody can be left waiting on a lock whose owner is gone. Each
critical section is a few dozen word reads and writes (microseconds). Use it from one
thread per process (the event loop's): record locks do not exclude threads of a process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import mmap
import os
import tempfile
from collections.abc import Iterator
from multiprocessing import reduction
from typing import Any

MAGIC = 0x696D616765676174  # "imagegat"
HEADER = 64  # words before the table
_MAGIC, _EPOCH, _EVICTIONS = 0, 1, 2
SLOT = 5  # words per window: key hash, expiry (s), window index, current, previous
_KEY, _EXPIRY, _WINDOW, _CURRENT, _PREVIOUS = range(SLOT)
SLOTS = 1 << 16  # distinct limit keys live at once (two windows) before eviction
PROBES = 32
SIZE = (HEADER + SLOTS * SLOT) * 8  # 2.6 MB, of which only touched pages take memory


def _anonymous_file(size: int) -> int:
    """A file with no name, so nothing is left behind whatever happens to the node."""
    try:
        fd = os.memfd_create("imagegate-node", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # not Linux
        fd, path = tempfile.mkstemp(prefix="imagegate-node-")
        os.unlink(path)
    os.ftruncate(fd, size)
    return fd


def key_hash(key: str) -> int:
    """Stable across processes (``hash()`` is salted per process); never 0 (empty)."""
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little",
                           signed=True)
    return value or 1


class NodeMemory:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, SIZE)
        self.words = memoryview(self._map).cast("q")
        if self.words[_MAGIC] == 0:
            self.words[_MAGIC] = MAGIC
        elif self.words[_MAGIC] != MAGIC:
            raise ValueError("not an imagegate node memory")

    @classmethod
    def create(cls) -> NodeMemory:
        return cls(_anonymous_file(SIZE))

    def __reduce__(self) -> tuple[Any, ...]:
        # Only while multiprocessing starts a child: the descriptor travels with it.
        return (_attach, (reduction.DupFd(self.fd),))

    @contextlib.contextmanager
    def locked(self) -> Iterator[memoryview]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            yield self.words
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    # credentials: every change anywhere on the node moves this counter

    @property
    def credentials_epoch(self) -> int:
        return int(self.words[_EPOCH])

    def bump_credentials(self) -> int:
        with self.locked() as words:
            words[_EPOCH] += 1
            return int(words[_EPOCH])

    @property
    def evictions(self) -> int:
        """Live windows dropped because the table was full around their key."""
        return int(self.words[_EVICTIONS])

    # rate-limit windows (the caller holds the lock)

    def find(self, key: int) -> int | None:
        """The offset of ``key``'s window, if it has one."""
        words = self.words
        start = key % SLOTS
        for i in range(PROBES):
            at = HEADER + ((start + i) % SLOTS) * SLOT
            owner = words[at + _KEY]
            if owner == key:
                return at
            if owner == 0:  # slots are never emptied, so the key is not further on
                return None
        return None

    def slot(self, key: int, expiry: int, now: float) -> int:
        """``key``'s window, claiming one for it if needed: an unused slot, else one whose
        windows are both over, else (the table is full here) the one that ends soonest."""
        words = self.words
        start = key % SLOTS
        free = -1
        soonest, soonest_end = -1, math.inf
        for i in range(PROBES):
            at = HEADER + ((start + i) % SLOTS) * SLOT
            owner = words[at + _KEY]
            if owner == key:
                return at
            if owner == 0:
                if free < 0:
                    free = at
                break
            ends = (words[at + _WINDOW] + 2) * words[at + _EXPIRY]  # the previous one counts
            if ends <= now:
                if free < 0:
                    free = at
            elif ends < soonest_end:
                soonest, soonest_end = at, ends
        if free < 0:
            free = soonest
            words[_EVICTIONS] += 1
        words[free + _KEY] = key
        words[free + _EXPIRY] = expiry
        words[free + _WINDOW] = int(now // expiry)
        words[free + _CURRENT] = 0
        words[free + _PREVIOUS] = 0
        return free

    def roll(self, at: int, now: float) -> tuple[int, int]:
        """(previous, current) counts of the window at ``at`` as of ``now``. Windows only
        move forward: a process that read the clock just before another moved it on
        counts in the new one."""
        words = self.words
        expiry = words[at + _EXPIRY]
        window = int(now // expiry)
        stored = words[at + _WINDOW]
        if stored < window:
            words[at + _PREVIOUS] = words[at + _CURRENT] if stored == window - 1 else 0
            words[at + _CURRENT] = 0
            words[at + _WINDOW] = window
        return int(words[at + _PREVIOUS]), int(words[at + _CURRENT])

    def add(self, at: int, amount: int) -> int:
        self.words[at + _CURRENT] += amount
        return int(self.words[at + _CURRENT])

    def expiry_of(self, at: int) -> int:
        return int(self.words[at + _EXPIRY])

    def clear(self, at: int) -> None:
        self.words[at + _CURRENT] = 0
        self.words[at + _PREVIOUS] = 0

    def clear_all(self) -> int:
        """Forget every window; how many were in use."""
        used = 0
        for i in range(SLOTS):
            at = HEADER + i * SLOT
            if self.words[at + _KEY]:
                used += 1
                self.clear(at)
        return used

    def close(self) -> None:
        self.words.release()
        self._map.close()
        os.close(self.fd)


def _attach(fd: Any) -> NodeMemory:
    return NodeMemory(fd.detach())
