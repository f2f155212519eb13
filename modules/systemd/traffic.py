"""systemd { markTraffic = on }: 0:2210 naming the service that sent or received a sampled packet.

The systemd module returns this enricher only with ``markTraffic = on``, so without it samples
keep the allocation-free path.  It reads the socket the tcp module's sock_diag answer named
(``Fact.SOCKET``: ``packet.cgroup_id``, ``packet.socket_inode``): the core runs it after tcp and,
when tcp holds a sample for its answer, only once the answer is in.  The maps from sockets to
services are the module's (``owners.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable

from hsflowd_py.enrichers import Enricher
from hsflowd_py.flow import Fact, SampledPacket

from .owners import Owners

PROCESS_READING = frozenset(("CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"))
"""What reading another user's /proc/<pid>/fd and /proc/<pid>/io takes: the directory and files are
mode 0500/0400 of the process's owner, and the kernel checks ptrace read access on top."""


class ServiceMarking(Enricher):
    """Marks a packet's sides that are sockets of tracked services; holds it only for a socket scan."""

    reads = Fact.SOCKET
    writes = Fact.ENTITIES

    def __init__(self, owners: Owners) -> None:
        self.owners = owners

    def enrich(self, packet: SampledPacket) -> Awaitable[None] | None:
        owners = self.owners
        if not owners.services or owners.resolve(packet) is not None:
            return None
        return owners.resolve_after_scan(packet)
