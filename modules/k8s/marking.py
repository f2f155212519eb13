"""markTraffic for pods: 0:2210 on flow samples of pod traffic, two ways.

By MAC or address
    A pod's interface MACs and global addresses (read inside its network namespace) map to its
    dsIndex in the core's table (``hsflowd_py/traffic_map.py``, as docker's containers: a key
    claimed by two owners marks nothing; MAC first, then address), so a packet between two pods of
    the node is marked on both sides, wherever it was sampled (the CNI bridge, a pod's veth, the
    uplink).  The core's :class:`~hsflowd_py.traffic_map.OwnerMarking` enricher does it, and leaves
    the pod's namespace as ``packet.netns`` for the tcp module.

By the socket's cgroup (:class:`SocketCgroups`)
    A pod that shares the host's network namespace (``hostNetwork: true``: kube-proxy, CNI agents,
    node exporters) has no MAC or address of its own: its packets carry the host's.  The tcp
    module's sock_diag answer names the local socket's cgroup v2 id (INET_DIAG_CGROUP_ID, the inode
    number of the cgroup's directory in the unified hierarchy), and this table maps the ids of such
    a pod's cgroup and of every cgroup below it (its containers', the pause process's) to the pod.

    Only pods in the host's namespace are mapped: the tcp module finds a socket in the namespace
    ``packet.netns`` names, the host's unless the MAC/IP marking named a pod, and a socket found
    in a pod's own namespace is that pod's, already marked by its address.  The socket is the
    packet's one local end, the source of a packet the host sent (direction out) and the
    destination of one it received (direction in); a sample of unknown direction is not marked
    this way.  The tcp module looks nothing up for a packet with both ends local (loopback), so
    a hostNetwork pod's loopback traffic is not marked.

    A pod's containers start after its sandbox, so their cgroups come after the pod is found: a
    cgroup id that names no pod makes the table walk the pods' cgroup trees again, at most once
    a second (a few directories per pod, only of pods in the host's namespace).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable
from pathlib import Path

from hsflowd_py.enrichers import Enricher
from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, DST, SRC, Fact, SampledPacket, mark_entity

REWALK_MIN_S = 1.0


def cgroup_ids(top: Path) -> list[int]:
    """The cgroup v2 ids of ``top`` and of every cgroup below it (their directories' inode numbers);
    a directory removed while walking is left out."""
    ids: list[int] = []
    todo = [top]
    while todo:
        d = todo.pop()
        try:
            ids.append(os.stat(d).st_ino)
            with os.scandir(d) as entries:
                todo += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return ids


class SocketCgroups:
    """Cgroup v2 ids of the guests in the host's network namespace → their dsIndex."""

    def __init__(self) -> None:
        self._tops: dict[str, tuple[int, Path]] = {}
        """Guest key → (dsIndex, its cgroup's directory in the unified hierarchy)."""
        self.owners: dict[int, int] = {}
        self._walked_at = float("-inf")

    def claim(self, key: str, ds_index: int, top: Path) -> None:
        self._tops[key] = (ds_index, top)
        self.owners.update(dict.fromkeys(cgroup_ids(top), ds_index))

    def release(self, key: str) -> None:
        if self._tops.pop(key, None) is not None:
            self._walk()

    def owner(self, cgroup_id: int) -> int | None:
        """The dsIndex of the guest whose cgroup has this id; an unknown id walks the trees again
        (a container started since), at most once per ``REWALK_MIN_S``."""
        ds_index = self.owners.get(cgroup_id)
        if ds_index is None and self._tops and time.monotonic() - self._walked_at >= REWALK_MIN_S:
            self._walk()
            ds_index = self.owners.get(cgroup_id)
        return ds_index

    def _walk(self) -> None:
        self._walked_at = time.monotonic()
        self.owners = {i: ds_index for ds_index, top in self._tops.values() for i in cgroup_ids(top)}


class SocketMarking(Enricher):
    """0:2210 naming the guest whose cgroup holds the packet's local socket (see the module docstring)."""

    reads = Fact.SOCKET
    writes = Fact.ENTITIES

    def __init__(self, cgroups: SocketCgroups) -> None:
        self.cgroups = cgroups

    def enrich(self, packet: SampledPacket) -> Awaitable[None] | None:
        cgroup_id = packet.cgroup_id
        if not cgroup_id or packet.direction not in (DIRECTION_IN, DIRECTION_OUT):
            return None
        ds_index = self.cgroups.owner(cgroup_id)
        if ds_index is not None:
            mark_entity(packet, SRC if packet.direction == DIRECTION_OUT else DST, ds_index)
        return None
