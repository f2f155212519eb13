"""Which interfaces to sample, and at what rate (REFERENCE.md section 4).

A ``pcap {}`` block picks interfaces by name (``dev``), by a regular expression on the name
(``dev.pattern``, ``re.search``: unanchored, like the established agent's regexec) and/or by
link speed (``speed``, an inclusive range).  A block that sets several of them wants all of
them to match.  Patterns and speeds select physical links and bridges: they skip loopback,
veth (and macvlan/ipvlan, which sysfs cannot tell apart from veth), bond masters (their
slaves are sampled) and VLAN sub-interfaces (their parent is); ``dev`` takes the named
interface whatever it is.  With several blocks, the first that matches an interface decides
its settings.  An interface that is down is still chosen: sampling starts with its first
packet once it comes up.

A ``dynamic = on`` block chooses only interfaces another module asked to have sampled
(``ModuleContext.request_sampling``: ``k8s { }`` asks for its pods' host veths), and those by
its ``dev``, ``dev.pattern`` and ``speed`` alone, veths included, as the established agent's
``evt_get_tap`` does: the requester knows what it asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Set
from dataclasses import dataclass
from functools import lru_cache

from hsflowd_py.config import Settings
from hsflowd_py.readers.netclass import ARPHRD_ETHER, ARPHRD_LOOPBACK, InterfaceInfo

from .settings import PcapSettings

SPEED_SAMPLING_RATIO = 1_000_000
"""Default bits/s per sampled packet when the link speed is known (1G → 1-in-1000)."""
SPEED_SAMPLING_MIN = 100


@dataclass(frozen=True)
class Tap:
    """One interface to sample and how: what a sampler needs to open it."""

    name: str
    ifindex: int
    sampling_rate: int
    header_bytes: int
    promisc: bool
    sampler: str
    """``auto``, ``ebpf`` or ``cbpf`` from the block that chose the interface."""
    mac: bytes | None
    """The interface's own MAC: a sent frame must carry it as its source (REFERENCE.md section 2)."""
    ethernet: bool
    """Frames start with a MAC header (Ethernet, and loopback's all-zero one); otherwise with IP."""
    speed: int | None = None
    """Link speed in bits/s, None when the interface does not say (bridges, dummies, tunnels)."""
    loopback: bool = False
    """Each packet passes twice (out, then in): counted once, as it comes in."""


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _skipped_by_patterns(info: InterfaceInfo) -> bool:
    return info.loopback or info.veth or info.bond_master or info.vlan


def matches(block: PcapSettings, info: InterfaceInfo, requested: Set[int] = frozenset()) -> bool:
    """Whether ``block`` chooses this interface; a ``dynamic`` one only if it is in ``requested``."""
    if block.dynamic and info.ifindex not in requested:
        return False
    if block.dev is not None and info.name != block.dev:
        return False
    if block.dev is None and not block.dynamic and _skipped_by_patterns(info):
        return False
    if block.dev_pattern is not None and not _compiled(block.dev_pattern).search(info.name):
        return False
    if block.speed is not None:
        low, high = block.speed
        if info.speed is None or info.speed < low or (high is not None and info.speed > high):
            return False
    return True


def sampling_rate(block: PcapSettings, settings: Settings, speed: int | None) -> int:
    """The 1-in-N rate of an interface, in the established agent's order of precedence; 0 is off."""
    if block.sampling is not None:
        return block.sampling
    if speed:
        by_speed = settings.sampling_by_speed.get(speed)
        if by_speed is not None:
            return by_speed
        ratio = settings.sampling_bps_ratio
        if ratio is None:
            return max(speed // SPEED_SAMPLING_RATIO, SPEED_SAMPLING_MIN)
        if ratio > 0:
            return max(speed // ratio, 1)
    return settings.sampling


def choose(infos: Iterable[InterfaceInfo], settings: Settings, requested: Set[int] = frozenset()) -> dict[int, Tap]:
    """The interfaces the settings' pcap blocks choose, by ifindex; ``requested``: the ifindexes
    modules asked to have sampled (for ``dynamic`` blocks)."""
    taps: dict[int, Tap] = {}
    for info in infos:
        block = next((b for b in settings.pcap if matches(b, info, requested)), None)
        rate = 0 if block is None else sampling_rate(block, settings, info.speed)
        if block is None or rate == 0:
            continue
        taps[info.ifindex] = Tap(
            name=info.name,
            ifindex=info.ifindex,
            sampling_rate=rate,
            header_bytes=settings.header_bytes,
            promisc=block.promisc,
            sampler=block.sampler,
            mac=info.mac,
            ethernet=info.arp_type in (ARPHRD_ETHER, ARPHRD_LOOPBACK),
            speed=info.speed,
            loopback=info.loopback,
        )
    return taps
