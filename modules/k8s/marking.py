"""markTraffic for pods: 0:2210 on flow samples whose MACs or addresses are a pod's.

A pod's interface MACs and global addresses (read inside its network namespace) map to its
dsIndex, with the table docker uses too (``hsflowd_py/traffic_map.py``: a key claimed by two owners marks
nothing; MAC first, then address), so a packet between two pods of the node is marked on both
sides, wherever it was sampled (the CNI bridge, a pod's veth, the uplink).  The marking itself is
the core's :class:`~hsflowd_py.traffic_map.OwnerMarking` enricher over this table, as for docker,
which also leaves the pod's namespace as ``packet.netns`` for the tcp module.
"""

from __future__ import annotations

from hsflowd_py.traffic_map import Owner, TrafficMap

from .pod import PodProbe


class PodMarker:
    def __init__(self) -> None:
        self.traffic = TrafficMap()

    def claim(self, sandbox_id: str, ds_index: int, probe: PodProbe) -> None:
        keys = [i.mac for i in probe.interfaces if i.mac] + [a.packed for i in probe.interfaces for a in i.addresses]
        self.traffic.claim(sandbox_id, Owner(ds_index, probe.netns), keys)

    def release(self, sandbox_id: str) -> None:
        self.traffic.release(sandbox_id)
