"""Every datagram reaches every collector; faults are counted, never raised."""

import asyncio
import socket
import subprocess
import sys
import time

import pytest
from netns import VethNamespace, sh

from hsflowd_py.receivers import Receivers


def listener(family: int, host: str) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(2)
    return s


def test_each_datagram_goes_to_ipv4_and_ipv6_collectors() -> None:
    a, b = listener(socket.AF_INET, "127.0.0.1"), listener(socket.AF_INET6, "::1")
    r = Receivers()
    r.configure([("127.0.0.1", a.getsockname()[1], None), ("::1", b.getsockname()[1], None)])
    r.send([b"one", b"two"])
    assert [a.recv(100), a.recv(100)] == [b"one", b"two"]
    assert [b.recv(100), b.recv(100)] == [b"one", b"two"]
    assert [x.sent for x in r.receivers] == [2, 2]
    r.close()
    a.close()
    b.close()


@pytest.mark.parametrize(
    "host",
    [
        "no-such-host.invalid",
        "\u00e4..example",  # an empty label in a non-ASCII name: the idna codec's UnicodeError, not a traceback
    ],
)
def test_unresolvable_collector_is_counted_and_the_others_still_get_data(host: str) -> None:
    a = listener(socket.AF_INET, "127.0.0.1")
    r = Receivers()
    r.configure([(host, 6343, None), ("localhost", a.getsockname()[1], None)])
    r.send([b"x"])
    assert a.recv(10) == b"x"
    bad = r.receivers[0]
    assert bad.errors == 1 and bad.unresolved and bad.sockaddr is None
    r.close()
    a.close()


def test_icmp_port_unreachable_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A collector port nobody listens on (a real closed UDP port on loopback): the kernel's ICMP
    port unreachable comes back as a refusal on the next send; every one is counted, one is logged,
    and every datagram is still sent (a refusal is about an earlier one); the collector beside it
    gets every datagram."""
    closed = listener(socket.AF_INET, "127.0.0.1")
    port = closed.getsockname()[1]
    closed.close()
    good = listener(socket.AF_INET, "127.0.0.1")
    r = Receivers()
    r.configure([("127.0.0.1", port, None), ("127.0.0.1", good.getsockname()[1], None)])
    with caplog.at_level("INFO", logger="hsflowd.receivers"):
        for _ in range(20):
            r.send([b"x"])
            time.sleep(0.005)
        refused, ok = r.receivers
        one_by_one = refused.refused
        r.send([b"y"] * 20)  # a drain's datagrams at once: each refusal is reported on a later one
    assert one_by_one >= 5 and refused.refused - one_by_one >= 5
    assert refused.errors == 0 and refused.sent == 40
    assert refused.counters() == {"sent": refused.sent, "errors": refused.errors, "refused": refused.refused}
    logged = [m for m in caplog.messages if str(port) in m]
    assert len(logged) == 1 and "ICMP port unreachable" in logged[0], logged
    assert ok.sent == 40 and ok.errors == 0 and [good.recv(10) for _ in range(40)] == [b"x"] * 20 + [b"y"] * 20
    r.close()
    good.close()


def test_reconfigure_keeps_counters_of_collectors_that_stay() -> None:
    a = listener(socket.AF_INET, "127.0.0.1")
    port = a.getsockname()[1]
    r = Receivers()
    r.configure([("127.0.0.1", port, None)])
    r.send([b"x"])
    r.configure([("127.0.0.1", port, None), ("127.0.0.1", 9, None)])
    assert r.receivers[0].sent == 1 and r.receivers[1].sent == 0
    r.close()
    a.close()


def test_names_are_resolved_off_the_loop() -> None:
    """With the agent's loop running, refresh() returns at once and the name resolves in the background."""
    a = listener(socket.AF_INET, "127.0.0.1")

    async def body() -> None:
        r = Receivers()
        r.configure([("localhost", a.getsockname()[1], None), ("127.0.0.1", 9, None)])
        named, literal = r.receivers
        assert named.resolving is not None and named.sockaddr is None
        assert literal.sockaddr == ("127.0.0.1", 9), "an address literal needs no resolver"
        await asyncio.wait_for(named.resolving, 5)
        assert named.sockaddr is not None and named.sockaddr[1] == a.getsockname()[1]
        r.send([b"x"])
        assert a.recv(10) == b"x"
        r.close()

    asyncio.run(body())
    a.close()


SEND_TO = """
import asyncio, sys
from hsflowd_py.receivers import Receivers

async def body() -> None:
    r = Receivers()
    r.configure([(host, int(sys.argv[1]), None) for host in sys.argv[2:]])
    for x in r.receivers:
        if x.resolving is not None:
            await asyncio.wait_for(x.resolving, 5)
    r.send([b"x"])
    print([x.sockaddr[0] for x in r.receivers], "encodings.idna" in sys.modules)

asyncio.run(body())
"""
"""Resolves and sends to the collectors it is given (literals at once, names on the loop's resolver thread), in
a process of its own: whether it imported the idna codec is told by its own ``sys.modules``."""


def send_to(*hosts: str) -> tuple[str, list[bytes]]:
    a = listener(socket.AF_INET, "127.0.0.1")
    out = subprocess.run([sys.executable, "-c", SEND_TO, str(a.getsockname()[1]), *hosts], capture_output=True,
                         text=True, timeout=20, check=True).stdout  # fmt: skip
    got = [a.recv(10) for _ in hosts]
    a.close()
    return out.strip(), got


def test_an_address_or_an_ascii_name_needs_no_idna_codec() -> None:
    """Its import costs ~270 kB resident (#19); only a name with other characters than ASCII needs it."""
    assert send_to("127.0.0.1", "localhost") == ("['127.0.0.1', '127.0.0.1'] False", [b"x", b"x"])
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "localhost")  # IDNA's nameprep maps it to plain localhost
    assert send_to(fullwidth) == ("['127.0.0.1'] True", [b"x"])


@pytest.mark.skipif(not hasattr(socket, "SO_BINDTODEVICE"), reason="Linux only")
def test_a_collector_dev_sends_through_that_device() -> None:
    """collector { dev }: the datagram leaves through the named device, not by the routing table."""
    with VethNamespace("rcvd", 66) as link:
        port = 6399
        listen = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                  f" s.bind(('{link.ns_ip}', {port})); print(s.recv(100).decode(), flush=True)")  # fmt: skip
        catch = subprocess.Popen(link.exec("timeout", "5", sys.executable, "-c", listen), stdout=subprocess.PIPE,
                                 text=True)  # fmt: skip
        while not sh(*link.exec("ss", "-Huln", f"sport = :{port}")).stdout.strip():
            time.sleep(0.05)
        via_lo, via_veth = Receivers(), Receivers()
        via_lo.configure([(link.ns_ip, port, "lo")])
        via_veth.configure([(link.ns_ip, port, link.host_dev)])
        via_lo.send([b"through lo"] * 3)  # the routing table would take the veth: bound to lo, it goes nowhere
        time.sleep(0.2)
        via_veth.send([b"through the veth"])
        out, _ = catch.communicate(timeout=5)
        assert out.strip() == "through the veth"
        assert via_lo.receivers[0].sent == 3 and via_veth.receivers[0].sent == 1
        via_lo.close()
        via_veth.close()
