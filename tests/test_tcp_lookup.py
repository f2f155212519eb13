"""The tcp module on real connections over a shaped veth pair: iperf3 bulk transfers sampled 1 in 10 off the wire,
checked against ``ss -tin`` and iperf3's own figures; namespaces, tunnels, UDP, merging and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import shutil
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass

import pytest
from netns import VethNamespace, sh
from tcp_traffic import (
    Capture,
    Frame,
    Iperf,
    clamp_mss,
    sampled,
    send_from_namespace,
    shape,
    sink,
    ss_info,
    tcp_payload,
)

from hsflowd_py.agent import Agent
from hsflowd_py.config import parse_config
from hsflowd_py.flow import Encoded, SampledPacket
from hsflowd_py.modules.tcp import TcpModule
from hsflowd_py.modules.tcp import lookup as lookup_mod
from hsflowd_py.packet import parse
from hsflowd_py.sflow.codec import encode_record
from hsflowd_py.sflow.records import ExtendedTcpInfo

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_PACKET"),
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3"),
]

ADVMSS = 1000
MSS = ADVMSS - 12  # both ends use timestamps: 12 bytes of options in every segment
SENT, RECEIVED = 2, 1


@pytest.fixture(scope="module")
def link() -> Iterator[VethNamespace]:
    with VethNamespace("tcpa", 40) as ns:
        shape(ns)
        clamp_mss(ns, ADVMSS)
        yield ns


@contextlib.asynccontextmanager
async def tcp_module(options: str = "") -> AsyncIterator[TcpModule]:
    settings = parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 }} tcp {{ {options} }} }}")
    module = TcpModule(Agent(settings).context, settings)
    await module.start()
    try:
        yield module
    finally:
        await module.stop()


async def held(module: TcpModule, packet: SampledPacket) -> None:
    """What the core does with a sample: enrich it and hold it at most 0.4 s."""
    hold = enrich(module, packet)
    if hold is not None:
        _, pending = await asyncio.wait([asyncio.ensure_future(hold)], timeout=0.4)
        for f in pending:
            f.cancel()


def enrich(module: TcpModule, packet: SampledPacket) -> Awaitable[None] | None:
    """What the core does for each sample: the module's one enricher (tcp has it whenever it runs)."""
    (enricher,) = module.enrichers()
    return enricher.enrich(packet)


def tcp_info(packet: SampledPacket) -> ExtendedTcpInfo | None:
    records = [r.record if isinstance(r, Encoded) else r for r in packet.extra]
    found = [r for r in records if isinstance(r, ExtendedTcpInfo)]
    assert len(found) <= 1
    return found[0] if found else None


@dataclass
class Sample:
    frame: Frame
    packet: SampledPacket
    ss_before: dict[str, float]
    ss_after: dict[str, float]

    @property
    def info(self) -> ExtendedTcpInfo | None:
        return tcp_info(self.packet)


async def sample_transfer(
    module: TcpModule,
    cap: Capture,
    iperf: Iperf,
    ss_ns: VethNamespace | None = None,
    rate: int = 10,
    netns: str | None = None,
) -> list[Sample]:
    """Sample 1 in ``rate`` frames while iperf3 runs, reading ``ss -tin`` for the socket between batches.

    A 2209's values may be up to ``FRESH_S`` older than its sample, so a batch's lower bound is the
    reading taken before the batch before it (at least one 0.25 s batch earlier); the first batch's is
    the first reading, taken before the module had any answer.
    """
    assert lookup_mod.FRESH_S < BATCH_S
    samples: list[Sample] = []
    before = lower = ss_info(iperf.cport, ss_ns)
    seen = 0
    assert iperf.client is not None
    while iperf.client.poll() is None:
        batch = []
        end = time.monotonic() + BATCH_S
        while time.monotonic() < end:
            frame = cap.read(0.05)
            if frame is None:
                continue
            seen += 1
            if seen % rate == 0:
                packet = sampled(frame, cap.ifindex, rate, netns)
                await held(module, packet)
                batch.append((frame, packet))
        after = ss_info(iperf.cport, ss_ns)
        samples += [Sample(f, p, lower, after) for f, p in batch]
        lower, before = before, after
    return samples


BATCH_S = 0.25


def on_connection(samples: list[Sample], port: int) -> list[Sample]:
    out = []
    for s in samples:
        flow = parse(s.frame.data, 1)
        if flow is not None and flow.proto == 6 and port in (flow.sport, flow.dport):
            out.append(s)
    return out


def check_consistent_with_ss(samples: list[Sample]) -> None:
    """MSS equal; min_rtt and total retransmissions between the ss readings before and after each look-up."""
    for s in samples:
        info = s.info
        if info is None or "mss" not in s.ss_before or "mss" not in s.ss_after:
            continue
        assert info.snd_mss == s.ss_before["mss"] == MSS
        assert s.ss_after.get("min_rtt", 0) - 0.0011 <= info.min_rtt_us / 1000 <= s.ss_before["min_rtt"] + 0.0011
        assert s.ss_before["retrans"] <= info.retrans <= s.ss_after["retrans"]


def run_bulk(link: VethNamespace, port: int, cport: int, *, reverse: bool, ipv6: bool) -> tuple[list[Sample], dict]:
    async def body() -> tuple[list[Sample], dict]:
        async with tcp_module() as module:
            iperf = Iperf(link, port, cport)
            with Capture(link.host_dev) as cap:
                try:
                    iperf.start(3, reverse=reverse, ipv6=ipv6)
                    samples = await sample_transfer(module, cap, iperf)
                    result = iperf.result()
                finally:
                    iperf.stop()
            return on_connection(samples, cport), result

    return asyncio.run(body())


def data_segments(samples: list[Sample], outgoing: bool) -> list[Sample]:
    return [s for s in samples if s.frame.outgoing == outgoing and tcp_payload(s.frame) > 0]


def check_coverage_and_direction(samples: list[Sample], data: list[Sample]) -> None:
    assert len(data) >= 40, f"only {len(data)} data segments sampled"
    carrying = [s for s in data if s.info is not None]
    # 95%: a sample whose look-up misses its hold under a loaded machine goes without; the
    # issue's 99% is a figure of bench/tcp_lookup.py, measured, not timed in a test
    assert len(carrying) >= 0.95 * len(data), f"{len(carrying)} of {len(data)} data segments carry 2209"
    for s in samples:
        if s.info is not None:
            assert s.info.dirn == (SENT if s.frame.outgoing else RECEIVED)


def test_bulk_ipv4_sent(link: VethNamespace) -> None:
    for attempt in range(3):  # a run in which tbf happened to drop nothing says nothing of retrans: again
        samples, result = run_bulk(link, 5240, 40240 + 100 * attempt, reverse=False, ipv6=False)
        if result["end"]["sum_sent"]["retransmits"] > 0:  # type: ignore[index]
            break
    data = data_segments(samples, outgoing=True)
    check_coverage_and_direction(samples, data)
    check_consistent_with_ss(samples)
    infos = [s.info for s in data if s.info is not None]
    assert all(i.snd_mss == MSS for i in infos)
    rtt = statistics.median(i.rtt_us for i in infos)
    min_rtt = statistics.median(i.min_rtt_us for i in infos)
    assert rtt >= 2000, f"median rtt {rtt} us: the tbf queue holds segments for milliseconds"
    assert rtt >= 20 * min_rtt, f"rtt {rtt} us against an unloaded {min_rtt} us"
    ss_rtts = [s.ss_before["rtt"] * 1000 for s in data if "rtt" in s.ss_before]
    assert statistics.median(ss_rtts) / 3 <= rtt <= statistics.median(ss_rtts) * 3
    retrans = max(i.retrans for i in infos)
    sent = result["end"]["sum_sent"]  # type: ignore[index]
    # iperf3's count stops at its last interval (the ss bracket bounds each reading); it only confirms the drops
    assert retrans > 0 and sent["retransmits"] > 0, "tbf drops must show as retransmissions"


def test_bulk_ipv4_received(link: VethNamespace) -> None:
    samples, _ = run_bulk(link, 5241, 40241, reverse=True, ipv6=False)
    data = data_segments(samples, outgoing=False)
    check_coverage_and_direction(samples, data)
    check_consistent_with_ss(samples)
    assert any(s.info is not None and s.info.dirn == SENT for s in samples), "the receiver's ACKs are sent"


def test_bulk_ipv6_sent(link: VethNamespace) -> None:
    samples, _ = run_bulk(link, 5242, 40242, reverse=False, ipv6=True)
    assert all(parse(s.frame.data, 1).version == 6 for s in samples)  # type: ignore[union-attr]
    data = data_segments(samples, outgoing=True)
    check_coverage_and_direction(samples, data)
    check_consistent_with_ss(samples)


def test_sockets_in_another_namespace(link: VethNamespace) -> None:
    """The iperf3 server's socket inside the namespace, named by /proc/<pid>/ns/net: received from its side."""

    async def body() -> None:
        async with tcp_module() as module:
            iperf = Iperf(link, 5243, 40243)
            with Capture(link.host_dev) as cap:
                try:
                    iperf.start(2)
                    assert iperf.server is not None
                    path = f"/proc/{iperf.server.pid}/ns/net"
                    samples = await sample_transfer(module, cap, iperf, ss_ns=link, netns=path)
                    assert iperf.server.wait(5) == 0
                finally:
                    iperf.stop()
            samples = on_connection(samples, iperf.cport)
            data = data_segments(samples, outgoing=True)
            check_coverage_and_direction([], data)
            assert all(s.info.dirn == RECEIVED for s in data if s.info), "from the namespace's side data comes in"
            check_consistent_with_ss(samples)
            assert module.status()["namespaces_open"] == 1
            module.namespaces.prune()  # the server exited: its /proc path is gone
            assert module.status()["namespaces_open"] == 0
            assert module.stats["namespaces_closed"] == 1

    asyncio.run(body())


def first_data_frame(cap: Capture, port: int, outgoing: bool = True) -> Frame:
    end = time.monotonic() + 3
    while time.monotonic() < end:
        frame = cap.read(0.2)
        if frame is None or frame.outgoing != outgoing:
            continue
        flow = parse(frame.data, 1)
        if flow is not None and flow.proto == 6 and port in (flow.sport, flow.dport) and tcp_payload(frame) > 0:
            return frame
    raise AssertionError(f"no data frame on port {port}")


@pytest.fixture
def connection(link: VethNamespace) -> Iterator[tuple[socket.socket, Frame, Capture]]:
    """A connection from the root namespace into a sink in the namespace, and one of its data frames."""
    with sink(link, 5250), Capture(link.host_dev) as cap:
        client = socket.create_connection((link.ns_ip, 5250))
        with client:
            client.sendall(bytes(3000))
            yield client, first_data_frame(cap, 5250), cap


def test_concurrent_samples_of_one_socket_share_a_lookup(connection: tuple[socket.socket, Frame, Capture]) -> None:
    client, frame, cap = connection

    async def body() -> None:
        async with tcp_module() as module:
            packets = [sampled(frame, cap.ifindex) for _ in range(20)]
            holds = [enrich(module, p) for p in packets]
            assert (module.stats["lookups"], module.stats["merged"]) == (1, 19)
            await asyncio.wait_for(asyncio.gather(*holds), 1)  # type: ignore[arg-type]
            for p in packets:
                info = tcp_info(p)
                assert info is not None and info.dirn == SENT and info.snd_mss == MSS
                assert p.socket_inode == os.fstat(client.fileno()).st_ino
                assert isinstance(p.cgroup_id, int)

    asyncio.run(body())


def with_ports(frame: Frame, sport: int, dport: int) -> Frame:
    data = bytearray(frame.data)
    struct.pack_into("!HH", data, 34, sport, dport)  # Ethernet 14 + IPv4 20: the TCP ports
    return Frame(bytes(data), frame.outgoing, frame.length)


def test_dump_logs_each_answer(connection: tuple[socket.socket, Frame, Capture], caplog) -> None:
    client, frame, cap = connection

    async def body() -> None:
        async with tcp_module("dump = on") as module:
            await held(module, sampled(frame, cap.ifindex))
            await asyncio.sleep(lookup_mod.FRESH_S)  # the first answer is stale: the kernel is asked again
            await held(module, sampled(frame, cap.ifindex))

    with caplog.at_level("INFO", logger="hsflowd.tcp"):
        asyncio.run(body())
    dumped = [r.getMessage() for r in caplog.records if "tcpi_snd_mss" in r.getMessage()]
    assert len(dumped) == 2 and f"local_port={client.getsockname()[1]}" in dumped[0]


def test_a_fresh_answer_serves_the_next_samples_at_once(connection: tuple[socket.socket, Frame, Capture]) -> None:
    """No hold, future or look-up for a socket answered a moment ago; past FRESH_S the next sample asks the
    kernel again there and then and goes at once with the new answer, as do the ones after it."""
    client, frame, cap = connection

    async def body() -> None:
        async with tcp_module() as module:
            first = sampled(frame, cap.ifindex)
            await held(module, first)
            assert tcp_info(first) is not None and module.stats["lookups"] == 1
            at_once = [sampled(frame, cap.ifindex) for _ in range(50)]
            assert [enrich(module, p) for p in at_once] == [None] * 50
            assert all(tcp_info(p) == tcp_info(first) for p in at_once)
            assert all(p.socket_inode == os.fstat(client.fileno()).st_ino for p in at_once)
            assert module.stats["lookups"] == 1 and module.stats["refreshes"] == 0
            await asyncio.sleep(lookup_mod.FRESH_S)
            late = [sampled(frame, cap.ifindex) for _ in range(20)]
            assert [enrich(module, p) for p in late] == [None] * 20, "older than FRESH_S: read again, none held"
            assert module.stats["refreshes"] == 1 and module.stats["lookups"] == 1
            assert module.namespaces.root.diag.held == 0 and module.namespaces.in_flight() == 0
            info = tcp_info(late[0])
            assert info is not None and info is not tcp_info(first), "made from the new answer"
            assert all(tcp_info(p) is info for p in late)

    asyncio.run(body())


def ring_of(frames: list[bytes], offset: int, stride: int) -> bytes:
    """Frames as a sampler's ring holds them: ``stride`` bytes apart, each ``offset`` bytes into its record."""
    ring = bytearray(stride * len(frames))
    for i, f in enumerate(frames):
        ring[i * stride + offset : i * stride + offset + len(f)] = f
    return bytes(ring)


def test_a_ring_read_is_answered_as_each_of_its_samples(connection: tuple[socket.socket, Frame, Capture]) -> None:
    """``at_once_many`` (the eBPF sampler's ring read) gives each sample what ``at_once`` gives it: the
    socket's 2209 for the connection's frames, nothing known for an unknown flow's, and, past FRESH_S,
    the new answer for all of them after one look-up."""
    _, frame, cap = connection
    other = with_ports(frame, 20001, 5250).data
    frames = [frame.data] * 5 + [other] + [frame.data] * 3
    offset, stride = 84, 512

    async def body() -> None:
        async with tcp_module() as module:
            (enricher,) = module.enrichers()
            first = sampled(frame, cap.ifindex)
            await held(module, first)
            interface = first.interface
            ring = ring_of(frames, offset, stride)
            lengths = [len(f) for f in frames]
            many = enricher.at_once_many(interface, ring, offset, stride, lengths)
            each = [enricher.at_once(interface, ring, offset + i * stride, n) for i, n in enumerate(lengths)]
            assert many == each
            single = ring_of([frame.data] * 4, offset, stride)  # one flow: answered without a step per sample
            assert enricher.at_once_many(interface, single, offset, stride, [len(frame.data)] * 4) == [many[0]] * 4
            record = tcp_info(first)
            assert record is not None and many[0] == (encode_record(record), 1) and many[5] is None
            assert module.stats["refreshes"] == 0
            await asyncio.sleep(lookup_mod.FRESH_S)
            again = enricher.at_once_many(interface, ring, offset, stride, lengths)
            assert module.stats["refreshes"] == 1 and again[5] is None
            assert again[0] is not None and again[0] is not many[0], "made from the new answer"
            assert [again[0] is r for i, r in enumerate(again) if i != 5] == [True] * 8

    asyncio.run(body())


def test_in_flight_lookups_are_capped(connection: tuple[socket.socket, Frame, Capture]) -> None:
    _, frame, cap = connection
    extra = 100

    async def body() -> None:
        async with tcp_module() as module:
            holds = [
                enrich(module, sampled(with_ports(frame, 20000 + i, 5250), cap.ifindex))
                for i in range(lookup_mod.MAX_IN_FLIGHT + extra)
            ]
            assert module.stats["lookups"] == lookup_mod.MAX_IN_FLIGHT and module.stats["busy"] == extra
            assert holds[-1] is None
            await asyncio.wait_for(asyncio.gather(*(h for h in holds if h is not None)), 2)  # type: ignore[misc]
            assert module.stats["not_found"] == lookup_mod.MAX_IN_FLIGHT

    asyncio.run(body())


def test_held_samples_are_capped(
    connection: tuple[socket.socket, Frame, Capture], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, frame, cap = connection
    extra = 10
    # the last sample must find the answer the held ones got still fresh, however long a loaded
    # machine takes to run their callbacks (the freshness rule itself is the test above's)
    monkeypatch.setattr(lookup_mod, "FRESH_S", 30.0)

    async def body() -> None:
        async with tcp_module() as module:
            packets = [sampled(frame, cap.ifindex) for _ in range(lookup_mod.MAX_HELD + extra)]
            holds = [enrich(module, p) for p in packets]
            assert holds[-extra:] == [None] * extra and module.stats["shed"] == extra
            assert module.stats["lookups"] == 1 and module.stats["merged"] == lookup_mod.MAX_HELD - 1
            await asyncio.wait_for(asyncio.gather(*holds[:-extra]), 2)  # type: ignore[arg-type]
            assert module.namespaces.root.diag.held == 0
            assert all(tcp_info(p) is not None for p in packets[:-extra])
            after = sampled(frame, cap.ifindex)
            assert enrich(module, after) is None and tcp_info(after) is not None, "answered: no shedding, no hold"

    asyncio.run(body())


def test_a_lost_reply_is_given_up(connection: tuple[socket.socket, Frame, Capture]) -> None:
    """A reply not read in time: the sample left without it, a later sample asks again, the late reply is dropped."""
    _, frame, cap = connection

    async def body() -> None:
        async with tcp_module() as module:
            channel = module.namespaces.root.diag
            loop = asyncio.get_running_loop()
            loop.remove_reader(channel.sock.fileno())  # as if the loop were too busy to read
            first = sampled(frame, cap.ifindex)
            await held(module, first)
            assert tcp_info(first) is None
            await asyncio.sleep(lookup_mod.STALE_S - 0.3)
            second = sampled(frame, cap.ifindex)
            hold = enrich(module, second)
            assert module.stats["lookups"] == 2 and module.stats["merged"] == 0
            assert module.stats["lost_replies"] == 1
            loop.add_reader(channel.sock.fileno(), channel._readable)
            await asyncio.wait_for(hold, 1)  # type: ignore[arg-type]
            assert tcp_info(second) is not None
            assert module.stats["late_replies"] == 1

    asyncio.run(body())


@contextlib.contextmanager
def port_dropped(link: VethNamespace, port: int) -> Iterator[None]:
    """TCP segments to ``port`` dropped on arrival in the namespace (an nft table of its own) until the block ends."""
    table = ("inet", "hsflowd_test")
    sh(*link.exec("nft", "add", "table", *table))
    try:
        sh(*link.exec("nft", "add", "chain", *table, "input", "{ type filter hook input priority 0; }"))
        sh(*link.exec("nft", "add", "rule", *table, "input", "tcp", "dport", str(port), "drop"))
        yield
    finally:
        sh(*link.exec("nft", "delete", "table", *table))


def test_samples_that_joined_a_lookup_before_the_handshake_ask_again(
    connection: tuple[socket.socket, Frame, Capture], link: VethNamespace
) -> None:
    """The first sample finds the socket still in SYN_SENT; the ones that joined it ask once more and,
    the connection being established by the time its reply is read, carry 2209."""
    _, frame, cap = connection

    async def body() -> None:
        async with tcp_module() as module:
            channel = module.namespaces.root.diag
            loop = asyncio.get_running_loop()
            with sink(link, 5251), socket.socket() as client:
                client.setblocking(False)
                with port_dropped(link, 5251):
                    assert client.connect_ex((link.ns_ip, 5251)) == errno.EINPROGRESS
                    loop.remove_reader(channel.sock.fileno())  # the replies wait until read below
                    packets = [sampled(with_ports(frame, client.getsockname()[1], 5251), cap.ifindex) for _ in range(3)]
                    holds = [enrich(module, p) for p in packets]
                    assert (module.stats["lookups"], module.stats["merged"]) == (1, 2)
                    await asyncio.sleep(0)  # the turn of the loop ends: the request goes to the kernel
                _, writable, _ = select.select([], [client], [], 3)  # the SYN goes again after its 1 s timeout
                assert writable and client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                loop.add_reader(channel.sock.fileno(), channel._readable)
                await asyncio.wait_for(asyncio.gather(*holds), 1)  # type: ignore[arg-type]
            assert module.stats["not_connected"] == 1 and module.stats["retries"] == 1
            assert tcp_info(packets[0]) is None, "the socket was not connected when the first look-up was answered"
            assert all(tcp_info(p) is not None for p in packets[1:])

    asyncio.run(body())


def test_a_namespace_that_cannot_be_opened(connection: tuple[socket.socket, Frame, Capture], caplog) -> None:
    _, frame, cap = connection

    async def body() -> None:
        async with tcp_module() as module:
            first = sampled(frame, cap.ifindex, netns="/proc/2147483647/ns/net")
            await held(module, first)
            assert tcp_info(first) is None and module.stats["namespace_errors"] == 1
            again = enrich(module, sampled(frame, cap.ifindex, netns="/proc/2147483647/ns/net"))
            assert again is None and module.stats["namespace_errors"] == 1

    asyncio.run(body())
    assert sum("/proc/2147483647/ns/net" in r.getMessage() for r in caplog.records) == 1


def test_one_socket_per_namespace_whatever_the_path(link: VethNamespace) -> None:
    with sink(link, 5251) as server:

        async def body() -> None:
            async with tcp_module() as module:
                assert isinstance(module.namespaces.get(f"/run/netns/{link.ns}"), asyncio.Future)
                a = await module.namespaces.get(f"/run/netns/{link.ns}")  # type: ignore[misc]
                b = await module.namespaces.get(f"/proc/{server.proc.pid}/ns/net")  # type: ignore[misc]
                assert a is b and module.status()["namespaces_open"] == 1
                assert module.namespaces.get("/proc/self/ns/net") is not None
                root = await module.namespaces.get(f"/proc/{os.getpid()}/ns/net")  # type: ignore[misc]
                assert root is module.namespaces.root

        asyncio.run(body())


@contextlib.contextmanager
def vxlan(link: VethNamespace, inner_subnet: int = 43) -> Iterator[str]:
    """A VXLAN overlay across the veth: 10.253.<inner_subnet>.1 here, .2 in the namespace."""
    dev = f"vxa{os.getpid() % 100000}"
    for side, local, remote, under, ip in (
        ((), link.host_ip, link.ns_ip, link.host_dev, 1),
        (tuple(link.exec()), link.ns_ip, link.host_ip, link.ns_dev, 2),
    ):
        sh(*side, "ip", "link", "add", dev, "type", "vxlan", "id", "40", "local", local, "remote", remote,
           "dstport", "4789", "dev", under)  # fmt: skip
        sh(*side, "ip", "addr", "add", f"10.253.{inner_subnet}.{ip}/24", "dev", dev)
        sh(*side, "ip", "link", "set", dev, "up")
    try:
        yield dev
    finally:
        sh("ip", "link", "del", dev, check=False)
        sh(*link.exec("ip", "link", "del", dev), check=False)


def test_tunnels(link: VethNamespace) -> None:
    """tunnel = on: a real VXLAN underlay frame and an IP-in-IP packet (no ipip driver in this kernel, so
    the outer IPv4 header is added here around the real inner packet) both find the inner socket."""
    with vxlan(link), sink(link, 5252), Capture(link.host_dev) as cap:
        client = socket.create_connection(("10.253.43.2", 5252))
        with client:
            client.sendall(bytes(20000))
            end = time.monotonic() + 3
            frame = None
            while time.monotonic() < end and frame is None:
                f = cap.read(0.2)
                flow = parse(f.data, 1, tunnel=True) if f and f.outgoing else None
                if flow is not None and flow.tunnelled and flow.dport == 5252 and len(f.data) > 120:  # type: ignore[union-attr]
                    frame = f
            assert frame is not None, "no VXLAN frame of the connection on the underlay"
            inner = frame.data[14 + 20 + 8 + 8 + 14 :]
            outer = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(inner), 0, 0, 64, 4, 0,
                                socket.inet_aton(link.host_ip), socket.inet_aton(link.ns_ip))  # fmt: skip
            ipip = Frame(frame.data[:12] + b"\x08\x00" + outer + inner, True, frame.length)

            async def body() -> None:
                async with tcp_module() as module:
                    assert enrich(module, sampled(frame, cap.ifindex)) is None, "without tunnel = on: outer UDP"
                    module.reconfigure(parse_config("sflow { collector { ip = 127.0.0.1 } tcp { tunnel = on } }"))
                    for f in (frame, ipip):
                        packet = sampled(f, cap.ifindex)
                        await held(module, packet)
                        info = tcp_info(packet)
                        assert info is not None and info.dirn == SENT
                        assert packet.socket_inode == os.fstat(client.fileno()).st_ino

            asyncio.run(body())


def test_udp_sockets_when_asked(link: VethNamespace) -> None:
    with Capture(link.host_dev) as cap, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"hello", (link.ns_ip, 5253))
        end = time.monotonic() + 3
        frame = None
        while time.monotonic() < end and frame is None:
            f = cap.read(0.2)
            flow = parse(f.data, 1) if f and f.outgoing else None
            if flow is not None and flow.proto == 17 and flow.dport == 5253:
                frame = f
        assert frame is not None

        async def body() -> None:
            async with tcp_module() as module:
                assert enrich(module, sampled(frame, cap.ifindex)) is None
            async with tcp_module("udp = on") as module:
                packet = sampled(frame, cap.ifindex)
                await held(module, packet)
                assert tcp_info(packet) is None, "the kernel has no tcp_info for UDP"
                assert packet.socket_inode == os.fstat(s.fileno()).st_ino
                assert packet.cgroup_id is not None

        asyncio.run(body())


def test_ipv4_traffic_of_a_dual_stack_socket(link: VethNamespace) -> None:
    """An IPv6 listener taking IPv4 connections holds v4-mapped addresses; an IPv4 look-up still finds it."""
    with (
        socket.create_server(("::", 5254), family=socket.AF_INET6, dualstack_ipv6=True) as server,
        Capture(link.host_dev) as cap,
        send_from_namespace(link, link.host_ip, 5254, 20000, 5) as client,
    ):
        accepted, _ = server.accept()
        with accepted:
            client.line()
            frame = first_data_frame(cap, 5254, outgoing=False)

            async def body() -> None:
                async with tcp_module() as module:
                    packet = sampled(frame, cap.ifindex)
                    await held(module, packet)
                    info = tcp_info(packet)
                    assert info is not None and info.dirn == RECEIVED
                    assert packet.socket_inode == os.fstat(accepted.fileno()).st_ino

            asyncio.run(body())
