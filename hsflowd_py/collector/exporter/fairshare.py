"""Members in groups, least recently seen first; when room is needed, the largest group gives it up.

The exporter must bound what it remembers whatever datagrams claim, and a
spoofer must not push real agents out by claiming more.  So the victim of an
eviction is not simply the oldest member overall (a flood makes every real
member the oldest) but the least recently seen member of the group holding
the most: a spoofer that claims thousands of agents from one sender, or
thousands of data sources for one agent, evicts its own entries first, and
a group that holds little keeps it.  Among groups of equal size the one
that reached that size first gives way.

Every operation is O(1): groups are kept in buckets by size, and the
largest size only ever moves by one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["FairShare"]

K = TypeVar("K", bound=Hashable)
G = TypeVar("G", bound=Hashable)


class FairShare(Generic[K, G]):
    """Which member to evict next: the least recently seen of a largest group."""

    def __init__(self) -> None:
        self.groups: dict[G, OrderedDict[K, None]] = {}
        self._by_size: dict[int, dict[G, None]] = {}
        self._largest = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def count(self, group: G) -> int:
        members = self.groups.get(group)
        return 0 if members is None else len(members)

    def _resize(self, group: G, old: int, new: int) -> None:
        if old:
            bucket = self._by_size[old]
            del bucket[group]
            if not bucket:
                del self._by_size[old]
                if self._largest == old:
                    self._largest = new
        if new:
            self._by_size.setdefault(new, {})[group] = None
            self._largest = max(self._largest, new)

    def add(self, key: K, group: G) -> None:
        """A new member, the most recently seen of its group."""
        members = self.groups.setdefault(group, OrderedDict())
        members[key] = None
        self.size += 1
        self._resize(group, len(members) - 1, len(members))

    def touch(self, key: K, group: G) -> None:
        """The member was just seen: it becomes the last of its group to go."""
        self.groups[group].move_to_end(key)

    def remove(self, key: K, group: G) -> None:
        members = self.groups[group]
        del members[key]
        self.size -= 1
        self._resize(group, len(members) + 1, len(members))
        if not members:
            del self.groups[group]

    def oldest(self, group: G) -> K:
        """The least recently seen member of ``group``."""
        return next(iter(self.groups[group]))

    def victim(self) -> tuple[K, G]:
        """The least recently seen member of the largest group (which must exist)."""
        group = next(iter(self._by_size[self._largest]))
        return self.oldest(group), group
