"""Real packets as sFlow flow samples, and ``sflowtool-py -t``/``-T`` piped into the real tcpdump and tshark.

``Sampler`` stands in for the agent's packet sampling (modules/pcap is being
written in parallel): an AF_PACKET socket on a veth sees every frame of real
traffic, keeps 1 in N at random, and turns each into a flow sample the way
the agent does (Ethernet header cut to 128 bytes, ``frame_length`` = wire
length + 4 for the FCS with ``stripped`` 4, a 0:1043 timestamp, direction
from the packet type), packs them into datagrams with the codec and sends
them to a collector.  Other tests (the Prometheus ones) use it too, with
counter samples added by a callback.

The tests here send real UDP, TCP, ICMP and IPv6 traffic across a veth into
a namespace, sample every packet, and check that tcpdump and tshark, reading
the collector's capture stream from a pipe, show each sampled packet with
the addresses, ports and lengths it had on the wire.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from netns import VethNamespace
from procs import python

from hsflowd_py.sflow.codec import encode_datagram
from hsflowd_py.sflow.records import INTERNAL_PORT, ExtendedTimestamp, SampledHeader
from hsflowd_py.sflow.samples import Datagram, FlowSample, Sample

ETH_P_ALL = 3
PACKET_OUTGOING = 4
HEADER_BYTES = 128
SAMPLES_PER_DATAGRAM = 5

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_PACKET")


@dataclass(frozen=True)
class Sampled:
    """What the sampler saw of one packet: the truth the collector's outputs are checked against."""

    header: bytes
    length: int
    outgoing: bool
    ns: int


class Sampler:
    """Samples a device's packets 1 in ``rate`` and streams them as sFlow datagrams to ``target``."""

    def __init__(
        self,
        dev: str,
        ifindex: int,
        rate: int,
        target: tuple[str, int],
        *,
        agent: str = "127.0.0.1",
        counters: Callable[[], list[Sample]] | None = None,
        poll: float = 1.0,
        flush: float = 0.1,
    ) -> None:
        self.dev, self.ifindex, self.rate, self.target, self.agent = dev, ifindex, rate, target, agent
        self.counters, self.poll, self.flush_every = counters, poll, flush
        self.sampled: list[Sampled] = []
        self.pool = 0
        self.datagrams = 0
        self._rng = random.Random(1)
        self._pending: list[Sample] = []
        self._sequence = 0
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._out = socket.socket(socket.AF_INET6 if ":" in target[0] else socket.AF_INET, socket.SOCK_DGRAM)
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind((dev, 0))
        self._sock.settimeout(0.02)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()
        self._out.close()

    def _run(self) -> None:
        buf = bytearray(HEADER_BYTES)
        last_flush = last_poll = time.monotonic()
        while not self._stop.is_set():
            try:
                length, address = self._sock.recvfrom_into(buf, HEADER_BYTES, socket.MSG_TRUNC)
            except TimeoutError:
                length = 0
            now = time.monotonic()
            if length:
                self.pool += 1
                if self._rng.randrange(self.rate) == 0:
                    self._sample(bytes(buf[: min(length, HEADER_BYTES)]), length, address[2] == PACKET_OUTGOING)
            if self.counters is not None and now - last_poll >= self.poll:
                last_poll = now
                self._pending.extend(self.counters())
            if len(self._pending) >= SAMPLES_PER_DATAGRAM or (self._pending and now - last_flush >= self.flush_every):
                self._send()
                last_flush = now
        if self._pending:
            self._send()

    def _sample(self, header: bytes, length: int, outgoing: bool) -> None:
        seen = Sampled(header, length, outgoing, time.time_ns())
        self.sampled.append(seen)
        inside = INTERNAL_PORT
        records = [SampledHeader(1, length + 4, 4, header), ExtendedTimestamp(seen.ns)]
        self._pending.append(
            FlowSample(
                0,
                self.ifindex,
                self.rate,
                self.pool,
                0,
                inside if outgoing else self.ifindex,
                self.ifindex if outgoing else inside,
                records,
                sequence=len(self.sampled),
            )
        )

    def _send(self) -> None:
        self._sequence += 1
        uptime = int((time.monotonic() - self._started) * 1000)
        datagram = Datagram(self.agent, 100000, self._sequence, uptime, self._pending)  # type: ignore[arg-type]
        self._pending = []
        self._out.sendto(encode_datagram(datagram), self.target)
        self.datagrams += 1


# ------------------------------------------------------------------ the collector piped into a reader


Started = tuple[subprocess.Popen[bytes], subprocess.Popen[str], int]


def start_collector_into(flags: list[str], reader: list[str]) -> Started:
    """``sflowtool-py -p 0 FLAGS | READER``; returns both processes and the collector's UDP port."""
    collector = subprocess.Popen(
        python("-m", "hsflowd_py.collector", "-p", "0", *flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert collector.stdout is not None and collector.stderr is not None
    consumer = subprocess.Popen(
        reader, stdin=collector.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    collector.stdout.close()  # the reader holds the pipe now
    line = collector.stderr.readline().decode()
    found = re.search(r"listening on UDP \S*:(\d+)$", line.strip())
    if not found:
        collector.kill()
        raise AssertionError(f"collector did not start: {line!r}")
    return collector, consumer, int(found.group(1))


def finish(collector: subprocess.Popen[bytes], consumer: subprocess.Popen[str]) -> tuple[str, str]:
    """Stop the collector by pid; the reader then sees end of file and exits."""
    time.sleep(0.3)
    os.kill(collector.pid, signal.SIGTERM)
    assert collector.wait(10) == 0
    out, err = consumer.communicate(timeout=20)
    return out, err


def traffic(v: VethNamespace) -> None:
    """UDP both ways over IPv4, one IPv6 UDP datagram, a TCP connection, pings: all into the namespace."""
    server = subprocess.Popen(
        v.exec(sys.executable, "-c", ECHO_SERVER, v.ns_ip, "41007"), stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((v.host_ip, 40001))
            for size in (10, 300, 1400):
                udp.sendto(b"u" * size, (v.ns_ip, 41007))
                udp.settimeout(5)
                udp.recvfrom(2048)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp6:
            udp6.sendto(b"v" * 100, (v.ns_ip6, 41008))
        with socket.socket() as tcp:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a previous run's TIME_WAIT
            tcp.settimeout(5)
            tcp.bind((v.host_ip, 40002))
            tcp.connect((v.ns_ip, 41007))
            tcp.sendall(b"t" * 500)
            tcp.recv(1000)
        subprocess.run(["ping", "-c", "2", "-i", "0.2", "-s", "200", v.ns_ip], capture_output=True, check=True)
    finally:
        server.terminate()
        server.wait(5)


ECHO_SERVER = """
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((host, port))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((host, port)); t.listen()
def udp():
    while True:
        data, peer = u.recvfrom(4096); u.sendto(data[:20], peer)
def tcp():
    while True:
        c, _ = t.accept(); c.sendall(c.recv(4096)[:50]); c.close()
threading.Thread(target=udp, daemon=True).start(); threading.Thread(target=tcp, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def expected_ipv4(sampled: list[Sampled]) -> list[tuple[str, str, str, int]]:
    """(src, dst, protocol word, wire length) of each sampled IPv4 frame, read from the raw bytes."""
    out = []
    for s in sampled:
        h = s.header
        if h[12:14] != b"\x08\x00":
            continue
        src, dst = socket.inet_ntoa(h[26:30]), socket.inet_ntoa(h[30:34])
        out.append((src, dst, {1: "ICMP", 6: "TCP", 17: "UDP"}.get(h[23], "?"), s.length))
    return out


@needs_root
def test_sampler_sees_the_real_traffic() -> None:
    with VethNamespace("cosa", 61) as v, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        with Sampler(v.host_dev, v.host_ifindex, 1, sink.getsockname()) as sampler:
            traffic(v)
            time.sleep(0.3)
    frames = expected_ipv4(sampler.sampled)
    udp_out = [f for f in frames if f[:3] == (v.host_ip, v.ns_ip, "UDP")]
    assert sorted(f[3] for f in udp_out) == [14 + 20 + 8 + n for n in (10, 300, 1400)]
    assert [f for f in frames if f[:3] == (v.ns_ip, v.host_ip, "UDP")] != []
    assert sum(f[2] == "ICMP" for f in frames) == 4  # two echo requests, two replies
    assert sum(s.header[12:14] == b"\x86\xdd" and s.header[20] == 17 for s in sampler.sampled) >= 1
    assert sampler.pool == len(sampler.sampled) and sampler.datagrams >= 1


def _tcpdump_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if " IP " in line or " IP6 " in line]


@needs_root
@pytest.mark.parametrize("flag", ["-t", "-T"])
def test_capture_stream_into_tcpdump_shows_the_sampled_packets(flag: str) -> None:
    collector, tcpdump, port = start_collector_into([flag], ["tcpdump", "-nn", "-tt", "-r", "-"])
    with VethNamespace("cotd", 62) as v, Sampler(v.host_dev, v.host_ifindex, 1, ("127.0.0.1", port)) as sampler:
        traffic(v)
        time.sleep(0.3)
    out, err = finish(collector, tcpdump)
    lines = _tcpdump_lines(out)
    ip_frames = [s for s in sampler.sampled if s.header[12:14] in (b"\x08\x00", b"\x86\xdd")]
    assert len(lines) == len(ip_frames), (err, out)
    for s, line in zip(ip_frames, lines, strict=True):
        assert line.startswith(f"{s.ns // 10**9}.{s.ns // 1000 % 10**6:06d} ")
    udp = [line for line in lines if f"IP {v.host_ip}.40001 > {v.ns_ip}.41007: UDP, length" in line]
    assert [int(line.rsplit(" ", 1)[1]) for line in udp] == [10, 300, 1400]
    assert any(f"IP {v.ns_ip}.41007 > {v.host_ip}.40001: UDP, length 20" in line for line in lines)
    assert any(f"IP {v.host_ip}.40002 > {v.ns_ip}.41007: Flags [S]" in line for line in lines)
    assert any(f"IP {v.host_ip}.40002 > {v.ns_ip}.41007: Flags [P.]" in line and "length 500" in line for line in lines)
    assert sum(f"IP {v.host_ip} > {v.ns_ip}: ICMP echo request" in line for line in lines) == 2
    assert any(f"IP6 {v.host_ip6}." in line and f"> {v.ns_ip6}.41008: UDP, length 100" in line for line in lines)


@needs_root
@pytest.mark.parametrize("flag", ["-t", "-T"])
def test_capture_stream_into_tshark_has_exact_lengths_and_addresses(flag: str) -> None:
    fields = ["frame.len", "frame.cap_len", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "tcp.srcport"]
    fields += ["tcp.dstport", "ipv6.src", "frame.interface_name", "frame.packet_flags_direction"]
    reader = ["tshark", "-r", "-", "-T", "fields", "-E", "separator=;", *(x for f in fields for x in ("-e", f))]
    collector, tshark, port = start_collector_into([flag], reader)
    with VethNamespace("cots", 63) as v, Sampler(v.host_dev, v.host_ifindex, 1, ("127.0.0.1", port)) as sampler:
        ifindex = v.host_ifindex
        traffic(v)
        time.sleep(0.3)
    out, err = finish(collector, tshark)
    rows = [line.split(";") for line in out.splitlines()]
    assert len(rows) == len(sampler.sampled), err
    for s, row in zip(sampler.sampled, rows, strict=True):
        frame_len, cap_len, ip_src, ip_dst, usport, udport, tsport, tdport, ip6_src, ifname, direction = row
        assert (int(frame_len), int(cap_len)) == (s.length, len(s.header))
        if s.header[12:14] == b"\x08\x00":
            assert (ip_src, ip_dst) == (socket.inet_ntoa(s.header[26:30]), socket.inet_ntoa(s.header[30:34]))
            at = 14 + (s.header[14] & 15) * 4
            ports = (str(int.from_bytes(s.header[at : at + 2])), str(int.from_bytes(s.header[at + 2 : at + 4])))
            if s.header[23] == 17:
                assert (usport, udport) == ports
            elif s.header[23] == 6:
                assert (tsport, tdport) == ports
        elif s.header[12:14] == b"\x86\xdd":
            assert ip6_src.split(",")[0] == socket.inet_ntop(socket.AF_INET6, s.header[22:38])  # ICMPv6 errors quote
        if flag == "-T":
            assert ifname == f"127.0.0.1 0:{ifindex}"
            assert int(direction, 16) & 3 == (2 if s.outgoing else 1)
    assert sum(row[4:6] == ["40001", "41007"] for row in rows) == 3
