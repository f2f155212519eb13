"""Local addresses of a namespace from rtnetlink: the dump, then changes as they happen, and hostile datagrams."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netns import VethNamespace, sh
from tcp_traffic import packed

from hsflowd_py.modules.tcp.addresses import LocalAddresses, open_route_socket
from hsflowd_py.netns import enter_namespace

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


@pytest.fixture
def link() -> Iterator[VethNamespace]:
    with VethNamespace("tcpd", 44) as ns:
        yield ns


def opened_in(link: VethNamespace) -> tuple[socket.socket, LocalAddresses]:
    """A route socket opened inside the link's namespace, by a thread that enters it and ends."""
    out: list[tuple[socket.socket, LocalAddresses]] = []

    def body() -> None:
        enter_namespace(f"/run/netns/{link.ns}")
        sock = open_route_socket()
        addresses = LocalAddresses()
        addresses.load(sock)
        out.append((sock, addresses))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)
    return out[0]


def follow(sock: socket.socket, addresses: LocalAddresses, until: object, seconds: float = 3) -> None:
    end = time.monotonic() + seconds
    while not until() and select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:  # type: ignore[operator]
        addresses.feed(sock.recv(65536))


def test_the_namespace_addresses_and_their_changes(link: VethNamespace) -> None:
    sock, addresses = opened_in(link)
    with sock:
        assert {packed(link.ns_ip), packed(link.ns_ip6), packed("127.0.0.1"), packed("::1")} <= addresses.local
        assert packed(link.host_ip) not in addresses.local, "the root namespace's addresses are not local here"
        sh(*link.exec("ip", "addr", "add", "10.253.44.9/32", "dev", link.ns_dev))
        follow(sock, addresses, lambda: packed("10.253.44.9") in addresses.local)
        assert packed("10.253.44.9") in addresses.local
        sh(*link.exec("ip", "addr", "del", f"{link.ns_ip}/24", "dev", link.ns_dev))
        follow(sock, addresses, lambda: packed(link.ns_ip) not in addresses.local)
        assert packed(link.ns_ip) not in addresses.local and packed("10.253.44.9") in addresses.local


def test_the_same_address_on_two_interfaces_stays_until_both_go(link: VethNamespace) -> None:
    sock, addresses = opened_in(link)
    with sock:
        sh(*link.exec("ip", "addr", "add", f"{link.ns_ip}/32", "dev", "lo"))
        sh(*link.exec("ip", "addr", "del", f"{link.ns_ip}/24", "dev", link.ns_dev))
        follow(sock, addresses, lambda: len([e for e in addresses.entries if e[1] == packed(link.ns_ip)]) == 1)
        assert packed(link.ns_ip) in addresses.local


def test_a_dump_replaces_the_set(link: VethNamespace) -> None:
    sock, addresses = opened_in(link)
    with sock:
        addresses.entries.add((999, packed("192.0.2.99")))  # as if a deletion had been lost in an overrun
        sock.send(addresses.start_dump())
        follow(sock, addresses, lambda: not addresses.dumping)
        assert packed("192.0.2.99") not in addresses.local and packed(link.ns_ip) in addresses.local


def test_a_resync_that_cannot_be_sent_is_owed_and_a_later_one_works(link: VethNamespace) -> None:
    sock, addresses = opened_in(link)
    closed = open_route_socket()
    closed.close()  # its send fails, as a request refused under memory pressure would
    with sock:
        addresses.entries.add((999, packed("192.0.2.99")))  # as if a deletion had been lost in an overrun
        with pytest.raises(OSError):
            addresses.resync(closed)
        assert not addresses.dumping and addresses.stale
        addresses.resync(sock)
        assert addresses.dumping and not addresses.stale
        follow(sock, addresses, lambda: not addresses.dumping)
        assert packed("192.0.2.99") not in addresses.local and packed(link.ns_ip) in addresses.local


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_datagrams_never_raise(data: bytes) -> None:
    addresses = LocalAddresses()
    addresses.feed(data)
    assert all(len(a) in (4, 16) for a in addresses.local)
