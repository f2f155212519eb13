"""systemd { markTraffic = on }: 0:2210 naming the service that sent or received a sampled packet.

The services, their cgroups and the socket maps belong to the ``systemd``
module (owners.py), which offers them through the module context under
``OWNERS``; this one only looks packets up in them.

The tcp module (enrich_order 10) may still be asking the kernel about the
packet's socket when this one is called: the core lists the holds of the
enrichers called before in ``packet.notes["holds"]``, and marking waits for
them (without cancelling them) so that it can use the cgroup id and socket
inode that the tcp module leaves in the notes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from hsflowd_py.config import Settings
from hsflowd_py.flow import SampledPacket
from hsflowd_py.module import Module, register
from hsflowd_py.privileges import Privileges

from .owners import OWNERS, Owners

PROCESS_READING = frozenset(("CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"))
"""What reading another user's /proc/<pid>/fd and /proc/<pid>/io takes: the directory and files are
mode 0500/0400 of the process's owner, and the kernel checks ptrace read access on top."""


@register
class SystemdTraffic(Module):
    name = "systemd-traffic"
    enrich_order = 30
    """After docker (5), whose entity record it shares, and tcp (10), whose answer it reads."""

    @classmethod
    def wanted(cls, settings: Settings) -> bool:
        return settings.systemd is not None and settings.systemd.mark_traffic

    def privileges(self) -> Privileges:
        return Privileges(set(PROCESS_READING))

    def _owners(self) -> Owners | None:
        owners = self.context.service(OWNERS)
        return owners if owners is not None and owners.services else None

    def enrich(self, packet: SampledPacket) -> Awaitable[None] | None:
        owners = self._owners()
        if owners is None:
            return None
        earlier = packet.notes.get("holds")
        if earlier:
            return self._mark_after(owners, packet, list(earlier))
        return _mark(owners, packet)

    async def _mark_after(self, owners: Owners, packet: SampledPacket, earlier: list[Any]) -> None:
        await asyncio.wait(earlier)
        if (pending := _mark(owners, packet)) is not None:
            await pending

    def status(self) -> dict[str, int]:
        owners = self._owners()
        return dict(owners.stats) if owners is not None else {}


def _mark(owners: Owners, packet: SampledPacket) -> Awaitable[None] | None:
    if owners.resolve(packet) is None:
        return owners.resolve_after_scan(packet)
    return None
