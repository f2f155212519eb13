"""tcp { }: the kernel's tcp_info of the local socket on each sampled TCP packet (0:2209).

For a sampled TCP packet with exactly one local end, the module asks the
kernel for that socket over NETLINK_SOCK_DIAG and adds an extended tcp_info
record (smoothed RTT, RTT variance, minimum RTT, MSS, congestion window, lost,
total retransmitted, unacked, reordering) with the packet's direction: sent
when the packet's source is the local socket, received otherwise.  The sample
is held until the answer comes, at most the core's 400 ms, and goes without
the record when none comes or the socket is not a connected one.

Settings: ``udp = on`` also looks up UDP sockets (the kernel has no tcp_info
for them, so they gain only the notes below); ``tunnel = on`` looks through
VXLAN and IP-in-IP to the inner packet (meant for end hosts: on a router it
would look up every tunnelled flow in vain); ``dump = on`` logs every answer.

Its enricher writes ``Fact.SOCKET`` for later enrichers (``enrichers.py``):

- ``packet.cgroup_id``: the socket's cgroup v2 id, INET_DIAG_CGROUP_ID
  (kernel >= 5.7); the systemd module maps it to a service;
- ``packet.socket_inode``: the socket's inode, found as ``socket:[inode]``
  under ``/proc/<pid>/fd`` when the cgroup id is not enough.

It reads ``Fact.NETNS``:

- ``packet.netns``: the path of the network namespace that owns the packet's
  local socket, such as ``/proc/<pid>/ns/net`` of a container's process;
  set by the docker module for traffic of a container (the core runs docker's
  enricher first, as it writes what this one reads).  The
  socket is then looked up inside that namespace, and "local" means an
  address of that namespace.  Any path naming a namespace file
  works (``/run/netns/NAME`` too); paths to the same namespace share one
  netlink socket, closed when the path disappears or after a minute unused.
  Without it the root namespace and the host's addresses are used.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

from hsflowd_py.config import Settings
from hsflowd_py.enrichers import NO_RECORDS, Enricher, Records
from hsflowd_py.flow import HEADER_ETHERNET, Fact, Header, Interface, SampledPacket
from hsflowd_py.module import Module, register
from hsflowd_py.packet import IPPROTO_TCP, IPPROTO_UDP, PORTED, packet_flow
from hsflowd_py.privileges import Privileges

from .inet_diag import SocketKey
from .lookup import DIRN_RECEIVED, DIRN_SENT, FRESH_S, Namespace, Namespaces, SocketState, log
from .memo import FLOW_BYTES_END, fields_flow, header_flow, one_flow, ring_fields
from .settings import TcpSettings

if TYPE_CHECKING:
    from hsflowd_py.module_context import ModuleContext

PRUNE_S = 5.0
MISSING: Any = object()


@register
class TcpModule(Module):
    name = "tcp"
    settings_type = TcpSettings

    namespaces: Namespaces

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self._prune_handle: asyncio.TimerHandle | None = None
        self._apply(settings)

    def _apply(self, settings: Settings) -> None:
        tcp = settings.tcp
        self.tunnel = bool(tcp and tcp.tunnel)
        self.udp = bool(tcp and tcp.udp)
        self.dump = bool(tcp and tcp.dump)

    async def start(self) -> None:
        self.namespaces = Namespaces(self.stats, self.dump)
        self._schedule_prune()

    async def stop(self) -> None:
        if self._prune_handle is not None:
            self._prune_handle.cancel()
        self.namespaces.close()

    def reconfigure(self, settings: Settings) -> None:
        super().reconfigure(settings)
        self._apply(settings)
        self.namespaces.dump = self.dump
        for ns in (self.namespaces.root, *self.namespaces.by_ident.values()):
            ns.diag.dump = self.dump

    def _schedule_prune(self) -> None:
        self._prune_handle = asyncio.get_running_loop().call_later(PRUNE_S, self._prune)

    def _prune(self) -> None:
        try:
            self.namespaces.prune()
        except Exception:  # clean-up must go on: a namespace left open pins a dead container's network
            self.stats["prune_errors"] += 1
            if self.stats["prune_errors"] == 1:
                log.exception("tcp: closing unused namespaces failed (further failures counted, not logged)")
        self._schedule_prune()

    def enrichers(self) -> Sequence[Enricher]:
        return [SocketInfo(self.namespaces, self.stats, tunnel=self.tunnel, udp=self.udp)]

    def privileges(self) -> Privileges:
        """Joining a container's namespace (setns) takes CAP_SYS_ADMIN; opening another user's
        /proc/<pid>/ns/net passes a ptrace access check, hence CAP_SYS_PTRACE.  The look-ups
        themselves need nothing: sock_diag answers any user."""
        return Privileges({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"})

    def status(self) -> dict[str, int]:
        out = dict(self.stats)
        out["namespaces_open"] = self.namespaces.open_count
        out["in_flight"] = self.namespaces.in_flight()
        return out


class SocketInfo(Enricher):
    """0:2209 and the socket's cgroup id and inode (``Fact.SOCKET``) for a packet with one local end,
    looked up in the namespace docker named (``Fact.NETNS``), else in the root namespace.

    A socket's answer serves its samples at once while fresh (``lookup.FRESH_S``) and is read again
    by the first sample that finds it older, and the flow's socket is remembered (``memo.py``): the
    samples of a socket answered before cost a slice and two dict look-ups, with no parse, future or
    hold.  Where tcp is the only enricher, such a sample is answered from its header alone
    (``at_once``): its 2209 as the bytes encoded once per answer, and no ``SampledPacket`` is made
    for it; a sampler's ring read is answered once per flow (``at_once_many``).
    """

    reads = Fact.NETNS
    writes = Fact.SOCKET

    def __init__(self, namespaces: Namespaces, stats: Counter[str], *, tunnel: bool, udp: bool) -> None:
        self.namespaces = namespaces
        self.root = namespaces.root
        self.stats = stats
        self.tunnel = tunnel
        self.udp = udp

    def enrich(self, packet: SampledPacket) -> Awaitable[None] | None:
        path = packet.netns
        if path is None:
            ns = self.namespaces.root
        else:
            opened = self.namespaces.get(path)
            if not isinstance(opened, Namespace):
                return None if opened is None else self._lookup_when_open(opened, packet)
            ns = opened
        if not self.tunnel and packet.header_protocol == HEADER_ETHERNET:
            known = header_flow(packet.header, 0, len(packet.header))
            if known is not None:
                proto, key = known
                if proto != IPPROTO_TCP and (proto != IPPROTO_UDP or not self.udp):
                    return None
                memo = ns.memo[proto]
                entry = memo.get(key, MISSING)
                if entry is MISSING:
                    entry = memo[key] = self._socket(ns, packet)
                if entry is None:
                    return None
                state = entry[0]
                if state.reply is not None and monotonic() - state.read_at < FRESH_S:  # the common case, inline
                    state.annotate(packet, entry[1], self.stats)
                    return None
                return ns.diag.answer(state, packet, entry[1])
        flow = packet_flow(packet, self.tunnel)
        if flow is None or (flow.proto != IPPROTO_TCP and (flow.proto != IPPROTO_UDP or not self.udp)):
            return None
        memo = ns.memo[flow.proto]
        entry = memo.get(flow, MISSING)
        if entry is MISSING:
            entry = memo[flow] = self._socket(ns, packet)
        return None if entry is None else ns.diag.answer(entry[0], packet, entry[1])

    def at_once(self, interface: Interface, header: Header, start: int, length: int) -> Records | None:
        """The 2209 of a packet of the root namespace whose flow is remembered and whose socket was answered
        (``_records``), encoded (the common case); None: ``enrich`` looks it up."""
        if interface.header_protocol != HEADER_ETHERNET or self.tunnel:
            return None
        known = header_flow(header, start, length)
        if known is None:
            return None
        records = self._records(*known)
        if records is not None and records[1]:
            self.stats["annotated"] += 1
        return records

    def at_once_many(
        self, interface: Interface, ring: Header, offset: int, stride: int, lengths: list[int]
    ) -> list[Records | None]:
        """``at_once`` for a ring read, each flow's answer found once: its samples' header fields are unpacked
        in bulk and counted (``memo.ring_fields``), so a sample costs no Python step of its own; the sockets
        whose answers are old are asked again together, in one datagram."""
        if interface.header_protocol != HEADER_ETHERNET or self.tunnel or min(lengths) < FLOW_BYTES_END:
            return super().at_once_many(interface, ring, offset, stride, lengths)
        n = len(lengths)
        if one_flow(ring, offset, stride):  # the common case: nothing made per sample
            flow = header_flow(ring, offset, lengths[0])
            records = None if flow is None else self._records(*flow)
            if records is not None and records[1]:
                self.stats["annotated"] += n
            return [records] * n
        fields = ring_fields(ring, offset, stride)
        counts = Counter(fields)
        flows = {f: fields_flow(f) for f in counts}
        now = monotonic()
        old = [s for flow in flows.values() if flow is not None and (s := self._old_state(*flow, now))]
        if old:
            self.root.diag.read_now(old, now)
        answers: dict[tuple[Any, ...], Records | None] = {}
        for f, count in counts.items():
            flow = flows[f]
            records = answers[f] = None if flow is None else self._records(*flow)
            if records is not None and records[1]:
                self.stats["annotated"] += count
        return list(map(answers.__getitem__, fields))

    def _old_state(self, proto: int, key: bytes, now: float) -> SocketState | None:
        """The socket of the root namespace with these flow bytes, if it was answered and the answer is old."""
        memo = self.root.memo.get(proto)
        entry = None if memo is None else memo.get(key)
        if entry is None or entry[0].reply is None or now - entry[0].read_at < FRESH_S:
            return None
        return entry[0]

    def _records(self, proto: int, key: bytes) -> Records | None:
        """The records of a packet of the root namespace with these flow bytes (``memo.header_flow``), if
        known at once: its socket's answer, asked again if old (``DiagChannel.read_now``)."""
        if proto != IPPROTO_TCP and (proto != IPPROTO_UDP or not self.udp):
            return NO_RECORDS
        entry = self.root.memo[proto].get(key, MISSING)
        if entry is None:
            return NO_RECORDS
        if entry is MISSING:
            return None
        state, dirn = entry
        if state.reply is None:
            return None
        now = monotonic()
        if now - state.read_at >= FRESH_S and not self.root.diag.read_now((state,), now):
            return None
        return state.records.get(dirn) or state.records_for(dirn)

    async def _lookup_when_open(self, opening: asyncio.Future[Namespace | None], packet: SampledPacket) -> None:
        ns = await asyncio.shield(opening)  # a timed-out sample must not cancel the opening for the others
        if ns is not None and (answer := self.enrich(packet)) is not None:
            await answer

    def _socket(self, ns: Namespace, packet: SampledPacket) -> tuple[SocketState, int] | None:
        """The local socket of a flow not seen before (and its 2209's direction), None if it has no one local
        end; keyed from the local end, with the sampled device for a socket bound to one (root namespace)."""
        flow = packet_flow(packet, self.tunnel)
        if flow is None or flow.proto not in PORTED:
            return None
        local = ns.addresses.local
        src_local = flow.src in local
        if src_local == (flow.dst in local):
            self.stats["not_one_local_end"] += 1
            return None
        ifindex = 0 if flow.tunnelled or ns is not self.namespaces.root else packet.ds_index
        if src_local:
            key = SocketKey(flow.proto, flow.src, flow.sport, flow.dst, flow.dport)
            return ns.diag.state(key, ifindex), DIRN_SENT
        key = SocketKey(flow.proto, flow.dst, flow.dport, flow.src, flow.sport)
        return ns.diag.state(key, ifindex), DIRN_RECEIVED
