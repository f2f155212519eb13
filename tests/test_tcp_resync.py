"""The tcp module's address resyncs: a real overrun of a namespace's route socket, and a dump request
that could not be sent, asked for again at the next prune."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from netns import VethNamespace
from tcp_traffic import packed

from hsflowd_py import netlink as nl
from hsflowd_py.modules.tcp.addresses import open_route_socket
from hsflowd_py.modules.tcp.lookup import Namespace, Namespaces

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


@pytest.fixture
def link() -> Iterator[VethNamespace]:
    with VethNamespace("tcpr", 48) as ns:
        yield ns


async def opened(namespaces: Namespaces, path: str) -> Namespace:
    got = namespaces.get(path)
    if isinstance(got, asyncio.Future):
        got = await got
    assert isinstance(got, Namespace)
    return got


async def settle(until: Callable[[], bool], seconds: float = 5) -> None:
    """Let the loop read the route socket until ``until()`` holds."""
    end = time.monotonic() + seconds
    while not until() and time.monotonic() < end:
        await asyncio.sleep(0.01)


def test_an_overrun_reads_the_whole_set_again(link: VethNamespace) -> None:
    added = [f"10.254.{i // 200}.{i % 200 + 1}" for i in range(400)]

    async def body() -> None:
        stats: Counter[str] = Counter()
        namespaces = Namespaces(stats)
        try:
            ns = await opened(namespaces, f"/run/netns/{link.ns}")
            ns.route.setsockopt(socket.SOL_SOCKET, nl.SO_RCVBUFFORCE, 0)  # the smallest buffer the kernel allows
            # hundreds of notifications while the loop is not reading: the socket overruns
            batch = "".join(f"addr add {a}/32 dev lo\n" for a in added)
            subprocess.run(["ip", "-n", link.ns, "-batch", "-"], input=batch, text=True, check=True)
            want = {packed(a) for a in added}
            await settle(lambda: not ns.addresses.dumping and want <= ns.addresses.local)
            assert stats["address_resyncs"] >= 1 and stats["address_resync_errors"] == 0
            assert want <= ns.addresses.local and packed(link.ns_ip) in ns.addresses.local
        finally:
            namespaces.close()

    asyncio.run(body())


def test_a_dump_that_could_not_be_asked_for_is_asked_for_at_the_next_prune(link: VethNamespace) -> None:
    async def body() -> None:
        namespaces = Namespaces(Counter())
        try:
            ns = await opened(namespaces, f"/run/netns/{link.ns}")
            ns.addresses.entries.add((999, packed("192.0.2.99")))  # as if a deletion had been lost in an overrun
            closed = open_route_socket()
            closed.close()
            with pytest.raises(OSError):
                ns.addresses.resync(closed)  # the request failed: a dump is owed
            assert ns.addresses.stale and not ns.addresses.dumping
            namespaces.prune()
            assert ns.addresses.dumping and not ns.addresses.stale
            await settle(lambda: not ns.addresses.dumping)
            assert packed("192.0.2.99") not in ns.addresses.local and packed(link.ns_ip) in ns.addresses.local
        finally:
            namespaces.close()

    asyncio.run(body())
