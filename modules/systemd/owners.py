"""markTraffic: which tracked service owns the local socket of a sampled packet.

Three ways to the owner, cheapest first:

1. the socket's cgroup id, when the tcp module's sock_diag answer carried it
   (``packet.cgroup_id``).  A cgroup v2 id is the inode number of the
   cgroup's directory in the unified hierarchy, so a ``stat`` of each
   service's cgroup (and its sub-cgroups) gives the map;
2. the socket's inode (``packet.socket_inode``, also from the tcp module);
3. otherwise the socket found in /proc/net by the packet's ends (UDP,
   listening sockets, or no tcp module).

Inodes map to services through ``/proc/<pid>/fd`` of the services'
processes.  A cgroup id that names no service does not settle it: a
socket-activated service's sockets were made by systemd itself and carry
PID 1's cgroup, while the descriptors are the service's.

The inode map and the socket tables are rebuilt (a *scan*, in a worker
thread) when a packet names an unknown socket, at most once per ``SCAN_MIN_S``;
packets that wait for a scan are held by the core (at most 0.4 s), so the
first packets of a new socket may go unmarked and the ones after are marked.  Ends
that a scan found unowned are remembered for ``UNOWNED_TTL_S``, so traffic
of processes outside any service (the agent itself, a login session, a
container) does not cause a scan per sample.

A packet sampled on ``lo`` has both ends on this host (a request from one local service to
another): both are looked up and both sides marked.  Elsewhere the sampler's direction names
the one local end; with no direction, the first end found is marked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, DST, SRC, SampledPacket, mark_entity
from hsflowd_py.netns import in_new_thread
from hsflowd_py.packet import IPPROTO_TCP, IPPROTO_UDP, Flow, packet_flow
from hsflowd_py.readers import ReaderError

from .service import Service, cgroup_tree, read_pids
from .sockets import Endpoints, read_sockets

log = logging.getLogger("hsflowd.systemd")

SCAN_MIN_S = 1.0
UNOWNED_TTL_S = 30.0
End = tuple[int, bytes, int, bytes, int]
"""(proto, local address, local port, remote address, remote port)."""
LOOPBACK_IFINDEX = 1
"""The kernel gives ``lo`` this ifindex in every namespace: a packet sampled there has both ends local."""


def local_ends(flow: Flow, direction: int, loopback: bool = False) -> list[tuple[int, End]]:
    """The packet's possible local ends, by side: the source of a sent packet, the destination of a
    received one, both (source first) on loopback or when the sampler could not tell."""
    src: End = (flow.proto, flow.src, flow.sport, flow.dst, flow.dport)
    dst: End = (flow.proto, flow.dst, flow.dport, flow.src, flow.sport)
    if loopback:
        return [(SRC, src), (DST, dst)]
    if direction == DIRECTION_OUT:
        return [(SRC, src)]
    if direction == DIRECTION_IN:
        return [(DST, dst)]
    return [(SRC, src), (DST, dst)]


def socket_inodes(root: Path, pid: int) -> list[int]:
    """Inodes of the sockets a process holds open (``socket:[N]`` links in /proc/<pid>/fd)."""
    fd_dir = root / f"proc/{pid}/fd"
    out = []
    try:
        names = os.listdir(fd_dir)
    except FileNotFoundError:
        return out  # exited
    except OSError as err:
        raise ReaderError(err.strerror or str(err), path=fd_dir) from None
    for name in names:
        try:
            link = os.readlink(fd_dir / name)
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            out.append(int(link[8:-1]))
    return out


def scan(root: Path, services: Iterable[Service]) -> tuple[dict[int, Service], Endpoints, list[ReaderError]]:
    """Socket inode → service, the services' sockets by their ends, and the services that could not be
    read (their sockets stay unknown; the others are mapped).  Runs in a thread of its own."""
    by_inode: dict[int, Service] = {}
    failures: list[ReaderError] = []
    for svc in services:
        if not svc.dirs:
            continue
        try:
            for pid in read_pids(svc.dirs):
                for inode in socket_inodes(root, pid):
                    by_inode[inode] = svc
        except ReaderError as err:
            failures.append(err)
    return by_inode, Endpoints(read_sockets(root, frozenset(by_inode))), failures


class Owners:
    """The maps from sockets to services, and the packet-side logic that uses them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.services: list[Service] = []
        self.by_cgroup: dict[int, Service] = {}
        self.by_inode: dict[int, Service] = {}
        self.endpoints = Endpoints(())
        self.unowned: dict[End, float] = {}
        self.last_scan = float("-inf")
        self.scan_began = float("-inf")
        self.scanning: asyncio.Future[None] | None = None
        self.stats: dict[str, int] = {"marked": 0, "unowned": 0, "scans": 0, "scan_errors": 0}
        self._logged: set[str] = set()

    def set_services(self, services: Iterable[Service]) -> None:
        """The tracked services changed (a refresh): remap cgroup ids; the inode map follows at the next scan."""
        self.services = list(services)
        by_cgroup = {}
        for svc in self.services:
            if svc.dirs.unified is None:
                continue
            for d in cgroup_tree(svc.dirs):
                try:
                    by_cgroup[os.stat(d).st_ino] = svc
                except OSError:
                    continue  # removed while walking
        self.by_cgroup = by_cgroup
        live = set(map(id, self.services))
        self.by_inode = {i: s for i, s in self.by_inode.items() if id(s) in live}

    # -------------------------------------------------------------- per packet

    def resolve(self, packet: SampledPacket, settle: bool = False) -> bool | None:
        """Mark the packet if its owners are known now: True marked, False settled as unowned, None unknown.

        The socket the tcp module named is the packet's one local end, so it settles the packet
        only when the direction gives a single end.  On loopback every end is looked up (both may
        be services); elsewhere the first end found settles it.  An end neither found nor known to
        be unowned makes the answer unknown, unless ``settle`` (a scan began after the packet came):
        then it is remembered as unowned.
        """
        flow = packet_flow(packet)
        if flow is None or flow.proto not in (IPPROTO_TCP, IPPROTO_UDP):
            return False
        loopback = packet.ds_index == LOOPBACK_IFINDEX
        ends = local_ends(flow, packet.direction, loopback)
        if len(ends) == 1:
            svc = self.by_cgroup.get(packet.cgroup_id or 0) or self.by_inode.get(packet.socket_inode or 0)
            if svc is not None:
                return self._mark(packet, [(ends[0][0], svc)])
        now = time.monotonic()
        found: list[tuple[int, Service]] = []
        unknown: list[End] = []
        for side, end in ends:
            inode = self.endpoints.find(*end)
            svc = self.by_inode.get(inode) if inode is not None else None
            if svc is not None:
                found.append((side, svc))
                if not loopback:
                    return self._mark(packet, found)
            elif self.unowned.get(end, 0.0) < now:
                unknown.append(end)
        if unknown and not settle:
            return None
        for end in unknown:
            self.unowned[end] = now + UNOWNED_TTL_S
        if found:
            return self._mark(packet, found)
        self.stats["unowned"] += 1
        return False

    async def resolve_after_scan(self, packet: SampledPacket) -> None:
        """Wait for a scan that began after this packet came (one at a time, shared), then settle it.

        A scan that was already under way may have listed the descriptors
        before the packet's socket was made, so it does not settle the packet
        as unowned: the next one does.  The scan runs on if the core stops
        holding the packet, for the packets after it.
        """
        asked = time.monotonic()
        for _ in range(2):
            if self.scanning is None:
                delay = max(0.0, self.last_scan + SCAN_MIN_S - time.monotonic())
                self.scanning = asyncio.ensure_future(self._scan(delay))
            await asyncio.shield(self.scanning)
            if self.resolve(packet, settle=self.scan_began >= asked) is not None:
                return

    def _mark(self, packet: SampledPacket, sides: list[tuple[int, Service]]) -> bool:
        for side, svc in sides:
            mark_entity(packet, side, svc.ds_index)
        self.stats["marked"] += 1
        return True

    async def _scan(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self.scan_began = time.monotonic()
            # a thread started from the loop's: it reads other users' /proc/<pid>/fd with the capabilities
            # the main thread kept, which a pool thread made before the privilege drop would not have
            self.by_inode, self.endpoints, failures = await in_new_thread(
                scan, self.root, list(self.services), name="systemd-scan"
            )
            self.stats["scans"] += 1
        except ReaderError as err:
            failures = [err]
        finally:
            self.last_scan = time.monotonic()
            self.scanning = None
            now = time.monotonic()
            self.unowned = {end: t for end, t in self.unowned.items() if t > now}
        for err in failures:
            self.stats["scan_errors"] += 1
            if err.reason not in self._logged:
                self._logged.add(err.reason)
                log.warning("systemd: cannot map sockets to services: %s (not logged again for this reason)", err)
