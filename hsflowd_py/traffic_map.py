"""markTraffic: which tracked container a sampled packet comes from or goes to.

Each container's interface MACs and global addresses (read inside its network namespace, or
from the engine's record when the namespace is out of reach) map to its dsIndex.  A MAC or
address claimed by more than one container (containers sharing a namespace, such as the
members of a Kubernetes pod; the same private address on two isolated networks) marks nothing.

A side (source or destination) is matched by MAC first: on the Docker bridge and the
containers' veths the MAC is exact, while an address may be translated; by address otherwise
(traffic routed through the host, samples without a MAC header).  Addresses come from the
shared header parser (``hsflowd_py/packet.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsflowd_py.enrichers import Enricher
from hsflowd_py.flow import DST, HEADER_ETHERNET, SRC, Fact, SampledPacket, mark_entity
from hsflowd_py.packet import packet_flow

if TYPE_CHECKING:
    from hsflowd_py.netns_links import Interface


@dataclass(frozen=True, slots=True)
class Owner:
    ds_index: int
    netns: str | None
    """``/proc/<pid>/ns/net`` of the container, None if it shares the host's namespace."""


def addresses(packet: SampledPacket) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None]:
    """(source MAC, destination MAC, source IP, destination IP) of a sampled header, packed;
    None where the header does not have it (too short, not IP)."""
    src_mac = dst_mac = None
    h = packet.header
    if packet.header_protocol == HEADER_ETHERNET and len(h) >= 12:
        dst_mac, src_mac = h[0:6], h[6:12]
    flow = packet_flow(packet)
    if flow is None:
        return src_mac, dst_mac, None, None
    return src_mac, dst_mac, flow.src, flow.dst


def interface_keys(interfaces: Iterable[Interface]) -> list[bytes]:
    """What a container or pod claims: its interfaces' MACs and addresses, packed."""
    interfaces = list(interfaces)
    return [i.mac for i in interfaces if i.mac] + [a.packed for i in interfaces for a in i.addresses]


class TrafficMap:
    """MACs and addresses (packed bytes: 6 for a MAC, 4 or 16 for an address) → their container."""

    def __init__(self) -> None:
        self._claims: dict[str, tuple[Owner, frozenset[bytes]]] = {}
        self.owners: dict[bytes, Owner] = {}
        """Keys claimed by exactly one container: the table the packet path reads."""

    def claim(self, cid: str, owner: Owner, keys: Iterable[bytes]) -> None:
        """Set (or replace) what container ``cid`` owns."""
        self._claims[cid] = (owner, frozenset(keys))
        self._rebuild()

    def release(self, cid: str) -> None:
        if self._claims.pop(cid, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        seen: dict[bytes, Owner | None] = {}
        for owner, keys in self._claims.values():
            for k in keys:
                seen[k] = owner if k not in seen else None
        self.owners = {k: o for k, o in seen.items() if o is not None}

    def sides(self, packet: SampledPacket) -> tuple[Owner | None, Owner | None]:
        """The containers a packet comes from and goes to."""
        src_mac, dst_mac, src_ip, dst_ip = addresses(packet)
        get = self.owners.get
        src = (get(src_mac) if src_mac else None) or (get(src_ip) if src_ip else None)
        dst = (get(dst_mac) if dst_mac else None) or (get(dst_ip) if dst_ip else None)
        return src, dst


class OwnerMarking(Enricher):
    """markTraffic: 0:2210 with 3:dsIndex on each side of a packet that is a container's or pod's
    (a side another module named already stays), and ``packet.netns`` = the namespace of the one
    that sent the packet, else of the one receiving it, for the tcp module's socket look-up."""

    reads = Fact.NONE
    writes = Fact.NETNS | Fact.ENTITIES

    def __init__(self, traffic: TrafficMap) -> None:
        self.traffic = traffic

    def enrich(self, packet: SampledPacket) -> None:
        if not self.traffic.owners:
            return None
        src, dst = self.traffic.sides(packet)
        if src is not None:
            mark_entity(packet, SRC, src.ds_index)
        if dst is not None:
            mark_entity(packet, DST, dst.ds_index)
        if packet.netns is None:
            packet.netns = (src.netns if src else None) or (dst.netns if dst else None)
        return None
