"""``-f HOST/PORT``: every datagram, byte for byte, to every target; a stopped target costs the others nothing.

Three real collector processes: A listens and forwards to B (IPv4) and C
(IPv6).  B prints JSON and forwards in turn to a socket of the test, so the
test sees the exact bytes that reached B.  C is stopped midway and started
again on the same port.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from procs import Proc, free_udp_port, python
from test_collector_cli import ipv6_loopback, start

from hsflowd_py.collector.forward import Forwarder, TargetError, parse_target
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.sflow.codec import encode_datagram
from hsflowd_py.sflow.records import PortName
from hsflowd_py.sflow.samples import CounterSample, Datagram

VECTORS = Path("/work/shared/vectors")
AGENT = ipaddress.ip_address("192.0.2.77")


def datagrams(count: int) -> list[bytes]:
    """Real hsflowd datagrams where available, each made unique by a trailing sample of its own."""
    real: list[bytes] = []
    if (VECTORS / "host-flows.pcap").is_file():
        with open(VECTORS / "host-flows.pcap", "rb") as f:
            real = [p.payload for p in read_pcap(f)]
    own = [
        encode_datagram(Datagram(AGENT, 100001, i + 1, i * 10, [CounterSample(0, 3, [PortName(f"eth{i}")], i)]))
        for i in range(count)
    ]
    return [real[i % len(real)] if real and i % 2 else own[i] for i in range(count)]


def listening(port: int, *flags: str) -> Proc:
    proc = Proc(python("-m", "hsflowd_py.collector", "-p", str(port), *flags))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any("listening on UDP" in line for line in proc.stderr):
            return proc
        time.sleep(0.02)
    proc.stop()
    raise AssertionError(f"collector on {port} did not start: {proc.stderr}")


def send_paced(port: int, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in payloads:
            s.sendto(payload, ("127.0.0.1", port))
            time.sleep(0.002)


def json_count(proc: Proc, expected: int, wait: float = 5) -> int:
    seen = 0
    for line in proc.lines_until(wait):
        seen += line.startswith("{")
        if seen == expected:
            break
    return seen


@pytest.mark.skipif(not ipv6_loopback(), reason="needs IPv6 on loopback")
def test_two_targets_one_stopped_midway() -> None:
    parts = [datagrams(300)[i * 100 : (i + 1) * 100] for i in range(3)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tap:
        tap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        tap.bind(("127.0.0.1", 0))
        tap.settimeout(5)
        b_port, c_port = free_udp_port(), free_udp_port()
        b = listening(b_port, "-j", "-f", f"127.0.0.1/{tap.getsockname()[1]}")
        c = listening(c_port, "-j")
        a, a_port = start("-f", f"127.0.0.1/{b_port}", "-f", f"::1/{c_port}")
        try:
            send_paced(a_port, parts[0])
            c_first = json_count(c, 100)
            assert c.stop() == 0
            send_paced(a_port, parts[1])
            time.sleep(0.3)
            c = listening(c_port, "-j")
            send_paced(a_port, parts[2])
            c_third = json_count(c, 100)
            b_all = json_count(b, 300)
            tapped = [tap.recv(65535) for _ in range(300)]
        finally:
            a_status = a.stop(signal.SIGTERM)
            b.stop()
            c.stop()
    assert tapped == parts[0] + parts[1] + parts[2]  # B got every datagram, byte for byte, in order
    assert b_all == 300
    assert (c_first, c_third) == (100, 100)  # nothing lost to the stale error once C is back
    assert a_status == 0
    summary = "".join(a.stderr)
    assert f"forwarded to 127.0.0.1:{b_port}: 300 sent, 0 errors" in summary
    found = re.search(rf"forwarded to \[::1\]:{c_port}: (\d+) sent, (\d+) errors \(ECONNREFUSED \d+\)", summary)
    assert found, summary
    assert int(found.group(1)) == 300 and int(found.group(2)) >= 1  # each down-time datagram sent, then refused


def test_forwarding_happens_whatever_is_printed_even_undecodable_datagrams() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tap:
        tap.bind(("127.0.0.1", 0))
        tap.settimeout(5)
        a, a_port = start("-l", "-f", f"127.0.0.1/{tap.getsockname()[1]}")
        payloads = [*datagrams(3), b"not sflow at all"]
        try:
            send_paced(a_port, payloads)
            received = [tap.recv(65535) for _ in payloads]
        finally:
            a.stop()
    assert received == payloads
    assert "4 datagrams, 1 decode errors" in "".join(a.stderr)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1/7000", ("127.0.0.1", 7000)), ("::1/7001", ("::1", 7001)), ("[fd00::1]/6343", ("fd00::1", 6343))],
)
def test_target_syntax(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1/", "/6343", "127.0.0.1/70000", "host/x"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


def test_unresolvable_target_stops_the_collector_with_a_message() -> None:
    with pytest.raises(TargetError, match="no-such-host.invalid"):
        Forwarder([("no-such-host.invalid", 6343)])
