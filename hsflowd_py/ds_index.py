"""dsIndex allocation for containers, VMs and services (data source class 3).

The index must be stable for a given UUID across agent restarts, so that a
collector's history of ``3:N`` stays with the same container: it starts at
100000 + FNV-1a(uuid) mod 50000 and probes linearly past indexes in use.
"""

from __future__ import annotations

FIRST = 100000
COUNT = 50000


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


class DsIndexes:
    """Allocates and releases indexes in 3:100000..149999."""

    def __init__(self) -> None:
        self._by_uuid: dict[bytes, int] = {}
        self._used: set[int] = set()

    def allocate(self, uuid: bytes) -> int:
        """The index of ``uuid``: the same one while it is held, preferred one when free."""
        index = self._by_uuid.get(uuid)
        if index is not None:
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
        index = self._by_uuid.pop(uuid, None)
        if index is not None:
            self._used.discard(index)
