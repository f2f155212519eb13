"""Asynchronous socket look-ups: one sock_diag channel per network namespace, on the agent's loop.

A look-up never blocks sampling: the request is one non-blocking ``send``, the
sample waits on a future, and the reply is read when the loop sees the socket
readable.  Samples of the same socket that arrive while its look-up is in
flight join that look-up instead of sending another; if it finds no connected
socket (the first packet was a SYN), the ones that joined ask once more.  Replies are matched by
netlink sequence number, so a reply that never comes (the socket's receive
buffer overran) is noticed when its entry ages out; the core has sent those
samples without tcp_info by then (it holds a sample at most 400 ms).
In-flight look-ups and held samples are capped: past either cap a sample
goes out without tcp_info rather than queueing.  A socket answered before is
asked again when its answer is ``FRESH_S`` old, by the sample that finds it
so, and the reply is read there and then (``DiagChannel.read_now``): the
kernel answers within the ``send``, so nothing is held and no turn of the
loop is spent on it.

Namespaces are opened on first use (in a fresh thread, see ``hsflowd_py/netns.py``),
shared by every path that names the same namespace, and closed when their
path disappears (the container stopped) or after a minute unused, so the
agent never keeps a dead container's namespace alive.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence

from hsflowd_py import netlink as nl
from hsflowd_py.enrichers import NO_RECORDS, Records
from hsflowd_py.flow import Encoded, SampledPacket
from hsflowd_py.netns import enter_namespace, namespace_id
from hsflowd_py.sflow.codec import encode_record
from hsflowd_py.sflow.records import ExtendedTcpInfo
from hsflowd_py.tasks import owned_by_thread

from . import inet_diag as diag
from .addresses import LocalAddresses, open_route_socket
from .memo import new_memo
from .memo import prune as prune_memo

log = logging.getLogger("hsflowd.tcp")

FRESH_S = 0.1
"""How old the values of a 0:2209 record can be when its sample is handled: a socket's answer serves its samples
at once, without holding them, until this long after its request was sent; the first sample that finds it older
asks again there and then (``DiagChannel.read_now``), so a socket sampled steadily has none of its samples held."""
STALE_S = 0.5
"""An unanswered look-up older than this is given up (the core's hold is 0.4 s)."""
MAX_IN_FLIGHT = 512
MAX_HELD = 4096
"""Samples waiting for answers, per namespace: past this a sample goes without tcp_info at once.  When
samples come faster than the loop can answer them (1-in-2 at 100 k packets/s), holding them all would
only grow memory and delay every datagram; shedding keeps the agent sampling."""
IDLE_S = 60.0
SOCKET_IDLE_S = 10.0
"""A socket whose last answer is older than this is forgotten at the next prune (it may be long closed)."""
OPEN_TIMEOUT_S = 5.0
RETRY_S = 30.0
"""How long a namespace that could not be opened is left alone."""

DIRN_RECEIVED = 1
DIRN_SENT = 2

Waiter = tuple[SampledPacket, int]
"""A held sample and the direction its 2209 record is for."""


class SocketState:
    """What the kernel last said of one socket, kept for its samples; one per socket per namespace."""

    __slots__ = ("encoded", "ifindex", "key", "pending", "read_at", "records", "reply")

    def __init__(self, key: diag.SocketKey, ifindex: int) -> None:
        self.key = key
        self.ifindex = ifindex
        """The sampled device, for a socket bound to one (0: any)."""
        self.reply: diag.DiagReply | None = None
        """The last answer; None: none yet, or the socket was not found or not connected."""
        self.read_at = float("-inf")
        """When the request behind ``reply`` was sent: its values are at most this old."""
        self.encoded: dict[int, Encoded] = {}
        """``reply``'s 2209 by direction, encoded once for all the samples that carry it."""
        self.records: dict[int, Records] = {}
        """The same as the records of a sample (``Enricher.at_once``): none when the reply has no tcp_info."""
        self.pending: InFlight | None = None

    def set_reply(self, reply: diag.DiagReply | None, read_at: float) -> None:
        """A new answer: the records made from the last one go with it."""
        self.reply, self.read_at, self.encoded, self.records = reply, read_at, {}, {}

    def record(self, dirn: int) -> Encoded:
        """The current answer's 2209 for packets of direction ``dirn`` (the answer has tcp_info)."""
        record = self.encoded.get(dirn)
        if record is None:
            assert self.reply is not None and self.reply.tcp_info is not None
            info = tcp_info_record(dirn, self.reply.tcp_info)
            record = self.encoded[dirn] = Encoded(info, encode_record(info))
        return record

    def records_for(self, dirn: int) -> Records:
        """The current answer's records for a sample of direction ``dirn``, encoded."""
        records = self.records.get(dirn)
        if records is None:
            assert self.reply is not None
            has_info = self.reply.tcp_info is not None
            records = self.records[dirn] = (self.record(dirn).data, 1) if has_info else NO_RECORDS
        return records

    def annotate(self, packet: SampledPacket, dirn: int, stats: Counter[str]) -> None:
        """Give ``packet`` the current answer: its 2209 (TCP) and the socket's identity (``Fact.SOCKET``)."""
        reply = self.reply
        assert reply is not None
        if reply.tcp_info is not None:
            packet.extra.append(self.record(dirn))
            stats["annotated"] += 1
        packet.cgroup_id = reply.cgroup_id
        packet.socket_inode = reply.inode


class InFlight:
    """One request on its way to the kernel; the held samples waiting for it share one future."""

    __slots__ = ("future", "retry", "sent", "seq", "state", "waiters")

    def __init__(self, state: SocketState, sent: float, waiters: list[Waiter], retry: bool = False) -> None:
        self.state = state
        self.sent = sent
        self.seq = 0
        self.waiters = waiters
        self.retry = retry
        """A second look-up for samples that joined a first one which found no connected socket."""
        self.future: asyncio.Future[None] | None = None

    def wait(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        if self.future is None:
            self.future = loop.create_future()
        return self.future


def tcp_info_record(dirn: int, info: diag.TcpInfo) -> ExtendedTcpInfo:
    """0:2209 from the kernel's tcp_info; retrans is the connection's total, not the current unacked ones."""
    return ExtendedTcpInfo(
        dirn,
        info.tcpi_snd_mss,
        info.tcpi_rcv_mss,
        info.tcpi_unacked,
        info.tcpi_lost,
        info.tcpi_total_retrans,
        info.tcpi_pmtu,
        info.tcpi_rtt,
        info.tcpi_rttvar,
        info.tcpi_snd_cwnd,
        info.tcpi_reordering,
        info.tcpi_min_rtt,
    )


def once(stats: Counter[str], kind: str, message: str, *args: object) -> None:
    """Count a fault; log only its first occurrence."""
    stats[kind] += 1
    if stats[kind] == 1:
        log.warning(message + " (further ones counted as %s, not logged)", *args, kind)


class DiagChannel:
    """One NETLINK_SOCK_DIAG socket: each socket's last answer, requests out in batches, replies matched
    to the samples waiting for them."""

    def __init__(self, sock: socket.socket, name: str, stats: Counter[str], dump: bool = False) -> None:
        self.sock = sock
        self.name = name
        self.stats = stats
        self.dump = dump
        self.loop = asyncio.get_running_loop()
        self.seq = 0
        self.states: dict[diag.SocketKey, SocketState] = {}
        self.by_seq: dict[int, InFlight] = {}
        self.batch: list[InFlight] = []
        """Requests made during this turn of the loop, sent together in one datagram when it ends."""
        self._flush_handle: asyncio.Handle | None = None
        self.held = 0
        self.last_used = time.monotonic()
        self.loop.add_reader(sock.fileno(), self._readable)

    def state(self, key: diag.SocketKey, ifindex: int) -> SocketState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = SocketState(key, ifindex)
        return state

    def answer(self, state: SocketState, packet: SampledPacket, dirn: int) -> asyncio.Future[None] | None:
        """Annotate ``packet`` at once from a fresh answer (None), else hold it for a look-up (a future
        shared with the other samples waiting for it), or None if it cannot be looked up now."""
        now = time.monotonic()
        if state.reply is not None and (now - state.read_at < FRESH_S or self.read_now((state,), now)):
            state.annotate(packet, dirn, self.stats)
            return None
        return self._hold(state, packet, dirn, now)

    def read_now(self, states: Sequence[SocketState], now: float) -> bool:
        """Ask again for sockets answered before, whose answers are ``FRESH_S`` old or more, and read the
        replies there and then; True if each has a fresh answer now.

        The kernel answers a sock_diag request within the ``send`` (the requests of one datagram in
        turn), so the replies are queued when it returns: the samples that found the answers old, and
        those after them, are answered at once, none held, however far apart the bursts in which a
        sampler hands them over.  False: a socket closed, or a reply was lost; its sample is held as for a
        first look-up.
        """
        self.last_used = now
        for state in states:
            if state.pending is None or now - state.pending.sent >= STALE_S:
                self._request(InFlight(state, now, []))
        if self._flush_handle is not None:  # this turn's requests, these among them, go now
            self._flush_handle.cancel()
            self._flush()
        self._readable()
        return all(state.reply is not None and now - state.read_at < FRESH_S for state in states)

    def _hold(self, state: SocketState, packet: SampledPacket, dirn: int, now: float) -> asyncio.Future[None] | None:
        self.last_used = now
        if self.held >= MAX_HELD:
            once(self.stats, "shed", "tcp: %d samples wait for answers in %s, more go without tcp_info", MAX_HELD,
                 self.name)  # fmt: skip
            return None
        pending = state.pending
        if pending is not None and now - pending.sent < STALE_S:
            pending.waiters.append((packet, dirn))
            self.held += 1
            self.stats["merged"] += 1
            return pending.wait(self.loop)
        self.expire(now)
        if len(self.by_seq) >= MAX_IN_FLIGHT:
            once(self.stats, "busy", "tcp: %d look-ups in flight in %s, samples go without tcp_info", MAX_IN_FLIGHT,
                 self.name)  # fmt: skip
            return None
        entry = InFlight(state, now, [(packet, dirn)])
        self._request(entry)
        self.held += 1
        return entry.wait(self.loop)

    def _request(self, entry: InFlight) -> None:
        """Queue the look-up for ``entry``; the queue goes to the kernel in one datagram when this turn of the
        loop ends (the kernel answers each request of a datagram in turn)."""
        self.seq = entry.seq = (self.seq + 1) & 0xFFFFFFFF
        self.by_seq[entry.seq] = entry
        entry.state.pending = entry
        self.batch.append(entry)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)
        self.stats["retries" if entry.retry else "lookups" if entry.waiters else "refreshes"] += 1

    def _flush(self) -> None:
        self._flush_handle = None
        batch, self.batch = self.batch, []
        try:
            self.sock.send(b"".join(diag.encode_request(e.state.key, e.seq, e.state.ifindex) for e in batch))
        except OSError as e:
            once(self.stats, "send_errors", "tcp: sock_diag request in %s failed: %s", self.name, e)
            for entry in batch:
                self._forget(entry)
                self._release(entry, annotate=False)
            return
        self.stats["batches"] += 1

    def _forget(self, entry: InFlight) -> None:
        self.by_seq.pop(entry.seq, None)
        if entry.state.pending is entry:
            entry.state.pending = None

    def expire(self, now: float) -> None:
        """Forget look-ups whose reply was lost; ``by_seq`` is in sending order, so the oldest come first."""
        while self.by_seq:
            entry = next(iter(self.by_seq.values()))
            if now - entry.sent < STALE_S:
                return
            self._forget(entry)
            self.stats["lost_replies"] += 1
            self._release(entry, annotate=False)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(nl.RECV_BYTES)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    once(self.stats, "recv_errors", "tcp: sock_diag socket in %s: %s", self.name, e)
                    return
                once(self.stats, "overruns", "tcp: sock_diag replies lost in %s: receive buffer full", self.name)
                continue
            for msg_type, _, seq, start, end in nl.messages(data):
                self._answer(msg_type, seq, data, start, end)

    def _answer(self, msg_type: int, seq: int, data: bytes, start: int, end: int) -> None:
        entry = self.by_seq.get(seq)
        if entry is None:
            self.stats["late_replies"] += 1
            return
        self._forget(entry)
        reply = None
        if msg_type == diag.SOCK_DIAG_BY_FAMILY:
            try:
                reply = diag.decode_reply(data, start, end)
            except diag.DiagError as e:
                once(self.stats, "bad_replies", "tcp: bad sock_diag reply in %s: %s", self.name, e)
        elif msg_type == nl.NLMSG_ERROR:
            code = nl.error_code(data, start, end)
            if code == errno.ENOENT:
                self.stats["not_found"] += 1
            else:
                once(
                    self.stats,
                    "diag_errors",
                    "tcp: sock_diag in %s refused a look-up: %s",
                    self.name,
                    os.strerror(code),
                )
        state = entry.state
        if reply is not None and state.key.proto == diag.IPPROTO_TCP and reply.state not in diag.TCP_SYNCHRONIZED:
            self.stats["not_connected"] += 1
            reply = None
        if reply is not None and self.dump:
            log.info("tcp: %s %s: %s", self.name, state.key, reply)
        if entry.sent >= state.read_at:
            state.set_reply(reply, entry.sent)
        if reply is None and len(entry.waiters) > 1 and not entry.retry:
            self._retry_joined(entry)
        self._release(entry)

    def _retry_joined(self, entry: InFlight) -> None:
        """Ask once more for the samples that joined ``entry`` after its request went out.

        The kernel answers a look-up when it is sent, so a first packet (a SYN) finds no connected
        socket; the later packets of a short connection that joined it may well belong to the
        connection established since, and would otherwise all go without tcp_info.  The first sample
        waits for the second answer too: the samples share one future.
        """
        retry = InFlight(entry.state, time.monotonic(), entry.waiters[1:], retry=True)
        retry.future, entry.future = entry.future, None
        del entry.waiters[1:]
        self._request(retry)

    def _release(self, entry: InFlight, annotate: bool = True) -> None:
        """Annotate every sample held for this look-up from its socket's answer (just read), if any, and let
        them go; ``annotate`` False: no answer came for them (an older one may be staler than FRESH_S)."""
        self.held -= len(entry.waiters)
        state = entry.state
        if annotate and state.reply is not None:
            for packet, dirn in entry.waiters:
                state.annotate(packet, dirn, self.stats)
        if entry.future is not None and not entry.future.done():
            entry.future.set_result(None)

    def prune(self, now: float) -> None:
        """Give up lost look-ups; forget sockets not answered for a while (their memo entries go with them)."""
        self.expire(now)
        for key, state in list(self.states.items()):
            if state.pending is None and now - state.read_at > SOCKET_IDLE_S:
                del self.states[key]

    @property
    def in_flight(self) -> int:
        return len(self.by_seq)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for entry in list(self.by_seq.values()):
            self._forget(entry)
            self._release(entry, annotate=False)
        self.batch.clear()
        self.sock.close()


def open_sockets() -> tuple[socket.socket, socket.socket, LocalAddresses]:
    """The sock_diag and route sockets of the calling thread's namespace, and its addresses."""
    diag_sock = nl.open_socket(nl.NETLINK_SOCK_DIAG)
    try:
        route = open_route_socket()
        try:
            addresses = LocalAddresses()
            addresses.load(route)
        except BaseException:
            route.close()
            raise
    except BaseException:
        diag_sock.close()
        raise
    return diag_sock, route, addresses


def open_sockets_in(path: str) -> tuple[socket.socket, socket.socket, LocalAddresses]:
    """:func:`open_sockets` of the namespace at ``path``, on a thread that ends right after."""
    enter_namespace(path)
    return open_sockets()


def close_opened(opened: tuple[socket.socket, socket.socket, LocalAddresses]) -> None:
    for s in opened[:2]:
        s.close()


class Namespace:
    """A network namespace's look-up channel and local addresses."""

    def __init__(
        self,
        name: str,
        ident: tuple[int, int],
        sockets: tuple[socket.socket, socket.socket, LocalAddresses],
        stats: Counter[str],
        dump: bool,
    ) -> None:
        diag_sock, self.route, self.addresses = sockets
        self.name = name
        self.ident = ident
        self.stats = stats
        self.paths: set[str] = set()
        self.diag = DiagChannel(diag_sock, name, stats, dump)
        self.memo = new_memo()
        self.diag.loop.add_reader(self.route.fileno(), self._route_readable)

    def _route_readable(self) -> None:
        while True:
            try:
                data = self.route.recv(nl.RECV_BYTES)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    once(self.stats, "route_errors", "tcp: address socket in %s: %s", self.name, e)
                    return
                self.stats["address_resyncs"] += 1  # notifications were lost: read the whole set again
                self.resync()
                continue
            local = self.addresses.local
            self.addresses.feed(data)
            if self.addresses.local is not local:  # which end is local may have changed
                self.memo = new_memo()

    def prune(self, now: float) -> None:
        self.diag.prune(now)
        prune_memo(self.memo, self.diag.states)

    def resync(self) -> None:
        """Ask for the whole address set again; a request that cannot be sent is counted and asked for
        again at the next overrun or prune (an exception here would escape the loop's reader callback)."""
        try:
            self.addresses.resync(self.route)
        except OSError as e:
            once(self.stats, "address_resync_errors", "tcp: cannot re-read the addresses of %s: %s", self.name, e)

    def close(self) -> None:
        self.diag.loop.remove_reader(self.route.fileno())
        self.route.close()
        self.diag.close()


class Namespaces:
    """The root namespace, opened at start, and the namespaces that sampled packets name by path."""

    def __init__(self, stats: Counter[str], dump: bool = False) -> None:
        self.stats = stats
        self.dump = dump
        self.root_ident = namespace_id("/proc/self/ns/net")
        self.root = Namespace("the root namespace", self.root_ident, open_sockets(), stats, dump)
        self.by_path: dict[str, Namespace] = {}
        self.by_ident: dict[tuple[int, int], Namespace] = {}
        self.opening: dict[str, asyncio.Future[Namespace | None]] = {}
        self.failed: dict[str, float] = {}

    def get(self, path: str) -> Namespace | asyncio.Future[Namespace | None] | None:
        """The namespace at ``path``, a future while it opens, or None if it cannot be opened."""
        ns = self.by_path.get(path)
        if ns is not None:
            return ns
        pending = self.opening.get(path)
        if pending is not None:
            return pending
        if time.monotonic() < self.failed.get(path, 0.0):
            return None
        fut = asyncio.ensure_future(self._open(path))
        self.opening[path] = fut
        fut.add_done_callback(lambda _: self.opening.pop(path, None))
        return fut

    async def _open(self, path: str) -> Namespace | None:
        try:
            ident = namespace_id(path)
            ns = self.root if ident == self.root_ident else self.by_ident.get(ident)
            if ns is None:
                opening = owned_by_thread(open_sockets_in, path, release=close_opened, name="hsflowd-netns")
                sockets = await asyncio.wait_for(opening, OPEN_TIMEOUT_S)  # stopping, or stuck: closed later
                ns = self.by_ident.get(ident)  # another path to it may have opened meanwhile
                if ns is None:
                    ns = self.by_ident[ident] = Namespace(path, ident, sockets, self.stats, self.dump)
                    self.stats["namespaces_opened"] += 1
                else:
                    close_opened(sockets)
        except Exception as e:
            self.failed[path] = time.monotonic() + RETRY_S
            self.stats["namespace_errors"] += 1
            log.warning("tcp: cannot look up sockets in network namespace %s: %s", path, e)
            return None
        ns.paths.add(path)
        self.by_path[path] = ns
        return ns

    def prune(self) -> None:
        """Close namespaces whose paths are gone or name another namespace now, and idle ones;
        give up look-ups whose replies were lost even when no new look-up comes to notice; ask again for
        the address dumps that could not be asked for at an overrun."""
        now = time.monotonic()
        self.root.prune(now)
        for path, ns in list(self.by_path.items()):
            try:
                current = namespace_id(path)
            except OSError:
                current = None
            if current != ns.ident:
                del self.by_path[path]
                ns.paths.discard(path)
        for ident, ns in list(self.by_ident.items()):
            ns.prune(now)
            if not ns.paths or now - ns.diag.last_used > IDLE_S:
                for path in ns.paths:
                    self.by_path.pop(path, None)
                del self.by_ident[ident]
                ns.close()
                self.stats["namespaces_closed"] += 1
        for ns in (self.root, *self.by_ident.values()):
            if ns.addresses.stale:
                ns.resync()
        self.failed = {p: t for p, t in self.failed.items() if t > now}

    @property
    def open_count(self) -> int:
        return len(self.by_ident)

    def in_flight(self) -> int:
        return self.root.diag.in_flight + sum(ns.diag.in_flight for ns in self.by_ident.values())

    def close(self) -> None:
        for fut in list(self.opening.values()):
            fut.cancel()
        for ns in self.by_ident.values():
            ns.close()
        self.by_ident.clear()
        self.by_path.clear()
        self.root.close()
