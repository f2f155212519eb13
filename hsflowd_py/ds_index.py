"""dsIndex allocation for containers, VMs and services (data source class 3).

The index must be stable for a given UUID across agent restarts, so that a
collector's history of ``3:N`` stays with the same container: it starts at
100000 + FNV-1a(uuid) mod 50000 and probes linearly past indexes in use.
A released index stays reserved for its UUID for ``forget_s`` seconds
(``forgetVMs``), so a container that restarts within that time gets it back
even if another one probed onto it meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FIRST = 100000
COUNT = 50000


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


class DsIndexes:
    """Allocates and releases indexes in 3:100000..149999."""

    def __init__(self, forget_s: float = 180.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.forget_s = forget_s
        self._clock = clock
        self._by_uuid: dict[bytes, int] = {}
        self._used: set[int] = set()
        self._released: dict[bytes, float] = {}
        """UUIDs whose index is still reserved, to when (in insertion order, so oldest first)."""

    def allocate(self, uuid: bytes) -> int:
        """The index of ``uuid``: the same one while it is held or reserved, preferred one when free."""
        self._forget_expired()
        index = self._by_uuid.get(uuid)
        if index is not None:
            self._released.pop(uuid, None)
            return index
        if len(self._used) >= COUNT:
            raise RuntimeError("all 50000 dsIndex values of class 3 are in use")
        slot = fnv1a32(uuid) % COUNT
        while FIRST + slot in self._used:
            slot = (slot + 1) % COUNT
        index = FIRST + slot
        self._used.add(index)
        self._by_uuid[uuid] = index
        return index

    def release(self, uuid: bytes) -> None:
        """``uuid`` is gone: its index stays reserved for ``forget_s`` seconds."""
        if uuid in self._by_uuid:
            self._released.pop(uuid, None)
            self._released[uuid] = self._clock() + self.forget_s

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._released:
            uuid, until = next(iter(self._released.items()))
            if until > now:
                return
            del self._released[uuid]
            self._used.discard(self._by_uuid.pop(uuid))
