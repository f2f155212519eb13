"""Datagrams sent many to a system call (sendmmsg) reach real sockets whole and in order; the faults a
batch meets are counted as the one-by-one sends count them."""

import ipaddress
import mmap
import socket
import time

import pytest

from hsflowd_py.bpf import mapping_address
from hsflowd_py.datagram_batch import DatagramBatch
from hsflowd_py.receivers import Receivers
from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram, encode_sample
from hsflowd_py.sflow.samples import FlowSample

AGENT6 = ipaddress.ip_address("fd00:252::1")


def listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.settimeout(2)
    return s


def receive(s: socket.socket, n: int) -> list[bytes]:
    return [s.recv(70000) for _ in range(n)]


def test_bodies_in_place_and_copied_arrive_whole_and_in_order() -> None:
    s = listener()
    region = bytes(range(256)) * 40
    m = mmap.mmap(-1, len(region))
    m.write(region)

    at = mapping_address(m)
    batch = DatagramBatch()
    expected = []
    for i in range(batch.capacity):
        header = b"H%02d" % i
        if i % 3:
            batch.add(header, at + 7 * i, 100 + i)
            expected.append(header + region[7 * i : 7 * i + 100 + i])
        else:
            body = b"copied %d " % i * (i + 1)
            assert batch.has_room(len(body))
            batch.add_copy(header, body)
            expected.append(header + body)
    assert not batch.has_room()
    r = Receivers()
    r.configure([("127.0.0.1", s.getsockname()[1], None)])
    r.send(batch)
    assert receive(s, len(expected)) == expected == list(batch)
    assert r.receivers[0].sent == len(expected) and r.receivers[0].errors == 0
    batch.clear()
    assert len(batch) == 0 and batch.has_room(65536)
    r.close()
    m.close()
    s.close()


def test_a_refusing_collector_is_counted_and_still_gets_every_datagram(caplog: pytest.LogCaptureFixture) -> None:
    """A closed UDP port on loopback answers each datagram with ICMP port unreachable, which the kernel
    reports on a later send; within a batch it stops the batch there and the report is lost: such a stop
    counts as a refusal, the datagram is sent again, and the collector beside it gets every datagram."""
    closed = listener()
    port = closed.getsockname()[1]
    closed.close()
    good = listener()
    r = Receivers()
    r.configure([("127.0.0.1", port, None), ("127.0.0.1", good.getsockname()[1], None)])
    payload = b"y" * 200
    batch = DatagramBatch()
    for i in range(40):
        batch.add_copy(b"%02d" % i, payload)
    with caplog.at_level("INFO", logger="hsflowd.receivers"):
        r.send(batch)
        time.sleep(0.01)
        r.send(batch)
    refusing, ok = r.receivers
    assert refusing.sent == 80 and refusing.errors == 0
    assert refusing.refused >= 20, refusing.counters()
    assert [m for m in caplog.messages if str(port) in m] == [
        f"collector 127.0.0.1:{port}: refused (ICMP port unreachable): no collector listening there?"
        " (Connection refused)"
    ]
    assert ok.sent == 80 and receive(good, 80) == list(batch) * 2
    r.close()
    good.close()


def test_an_error_that_stays_is_counted_for_its_datagram_and_the_rest_go() -> None:
    """A datagram too large for UDP (EMSGSIZE, which the kernel returns at once and keeps returning):
    the batch stops there, the retry fails, it is counted as an error and skipped."""
    s = listener()
    big = mmap.mmap(-1, 70000)

    batch = DatagramBatch()
    batch.add_copy(b"", b"one")
    batch.add(b"", mapping_address(big), 70000)
    batch.add_copy(b"", b"three")
    r = Receivers()
    r.configure([("127.0.0.1", s.getsockname()[1], None)])
    r.send(batch)
    assert receive(s, 2) == [b"one", b"three"]
    assert r.receivers[0].counters() == {"sent": 2, "errors": 1, "refused": 0}
    r.close()
    big.close()
    s.close()


def flow(seq: int) -> bytes:
    return encode_sample(FlowSample(0, 8, 10, 10 * seq, 0, 8, 0x3FFFFFFF, [rec.SampledHeader(1, 68, 4, b"\xab" * 64)]))


def test_samples_sent_in_place_are_numbered_across_batches_after_the_pending_datagram() -> None:
    """More datagrams than a batch holds, their samples read where they lie: one pending sample goes
    first, then every datagram, numbered in order, samples as given."""
    s = listener()
    r = Receivers()
    r.configure([("127.0.0.1", s.getsockname()[1], None)])
    a = DatagramAssembler(AGENT6, 7, 1400, r.send)
    a.add(flow(1), uptime_ms=5)
    bodies = [flow(2 * i) + flow(2 * i + 1) for i in range(1, 151)]
    region = b"".join(bodies)
    m = mmap.mmap(-1, len(region))
    m.write(region)

    at = mapping_address(m)
    offsets = [sum(map(len, bodies[:i])) for i in range(len(bodies))]
    assert a.send_in_place([(2, at + o, len(b)) for o, b in zip(offsets, bodies, strict=True)], 9) == 300
    raw = receive(s, 151)
    decoded = [decode_datagram(d) for d in raw]
    assert [d.sequence for d in decoded] == list(range(1, 152))
    assert [d.uptime_ms for d in decoded] == [9] * 151 and {d.agent for d in decoded} == {AGENT6}
    assert [len(d.samples) for d in decoded] == [1] + [2] * 150
    assert raw[0][40:] == flow(1) and [d[40:] for d in raw[1:]] == bodies
    assert r.receivers[0].sent == 151 and a.datagrams_sent == 151 and a.samples_sent == 301
    r.close()
    m.close()
    s.close()
