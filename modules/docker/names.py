"""Unique names for containers' 2000 hostname.

Collectors key dashboards on the hostname, so two live containers must not share one.  Engine
names are unique already, but hostnames often repeat (every container of a Kubernetes pod has
the pod's).  The first container to claim a name keeps it; a later one with the same name gets
``<name>.<short id>`` (as the established agent does), cut so that the suffix survives the
64-byte limit of the hostname field.
"""

from __future__ import annotations

MAX_BYTES = 64


class UniqueNames:
    def __init__(self) -> None:
        self._owner: dict[str, str] = {}
        self._base: dict[str, str] = {}

    def claim(self, cid: str, base: str) -> None:
        """Give container ``cid`` the name ``base`` (again, after a rename)."""
        self.release(cid)
        self._base[cid] = base
        self._owner.setdefault(base, cid)

    def release(self, cid: str) -> None:
        base = self._base.pop(cid, None)
        if base is not None and self._owner.get(base) == cid:
            del self._owner[base]

    def name(self, cid: str) -> str:
        base = self._base.get(cid, "")
        if self._owner.get(base) == cid:
            return base
        suffix = "." + cid[:12]
        head = base.encode()[: MAX_BYTES - len(suffix)].decode("utf-8", "ignore")
        return head + suffix
