"""Veth pairs for the pcap tests and benchmark, each on a /24 that no concurrent run is using.

Several sessions run the test suite on the same machine at once.  Two veth pairs with the
same addresses in the root namespace make the kernel route one run's traffic over the other
run's veth, and both runs then count the wrong packets.  So each pair takes one of the pcap
module's subnets (10.253.30-39.0/24) under a lock file held for its lifetime, skipping any
subnet the root namespace already routes (a run that does not take locks).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator

from netns import VethNamespace

SUBNETS = range(30, 40)
LOCKS = "/run/lock"


def _routed(subnet: int) -> bool:
    out = subprocess.run(["ip", "-4", "route", "show", f"10.253.{subnet}.0/24"], capture_output=True, text=True)
    return bool(out.stdout.strip())


@contextlib.contextmanager
def veth_pair(tag: str, ipv6: bool = True) -> Iterator[VethNamespace]:
    """A :class:`VethNamespace` on a free subnet of the pcap module's range."""
    for subnet in SUBNETS:
        fd = os.open(f"{LOCKS}/hsflowd-py-pcap-subnet-{subnet}", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            if _routed(subnet):
                continue
            with VethNamespace(tag, subnet, ipv6=ipv6) as v:
                yield v
            return
        finally:
            os.close(fd)
    raise RuntimeError(f"every pcap test subnet 10.253.{SUBNETS.start}-{SUBNETS.stop - 1}.0/24 is in use")
