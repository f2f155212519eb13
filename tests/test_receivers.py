"""Every datagram reaches every collector; faults are counted, never raised."""

import socket

from hsflowd_py.receivers import Receivers


def listener(family: int, host: str) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(2)
    return s


def test_each_datagram_goes_to_ipv4_and_ipv6_collectors() -> None:
    a, b = listener(socket.AF_INET, "127.0.0.1"), listener(socket.AF_INET6, "::1")
    r = Receivers()
    r.configure([("127.0.0.1", a.getsockname()[1]), ("::1", b.getsockname()[1])])
    r.send(b"one")
    r.send(b"two")
    assert [a.recv(100), a.recv(100)] == [b"one", b"two"]
    assert [b.recv(100), b.recv(100)] == [b"one", b"two"]
    assert [x.sent for x in r.receivers] == [2, 2]
    r.close()
    a.close()
    b.close()


def test_unresolvable_collector_is_counted_and_the_others_still_get_data() -> None:
    a = listener(socket.AF_INET, "127.0.0.1")
    r = Receivers()
    r.configure([("no-such-host.invalid", 6343), ("localhost", a.getsockname()[1])])
    r.send(b"x")
    assert a.recv(10) == b"x"
    bad = r.receivers[0]
    assert bad.errors == 1 and bad.unresolved and bad.sockaddr is None
    r.close()
    a.close()


def test_reconfigure_keeps_counters_of_collectors_that_stay() -> None:
    a = listener(socket.AF_INET, "127.0.0.1")
    port = a.getsockname()[1]
    r = Receivers()
    r.configure([("127.0.0.1", port)])
    r.send(b"x")
    r.configure([("127.0.0.1", port), ("127.0.0.1", 9)])
    assert r.receivers[0].sent == 1 and r.receivers[1].sent == 0
    r.close()
    a.close()
