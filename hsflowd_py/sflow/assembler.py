"""Pack encoded samples into datagrams for one agent address and sub-agent.

The assembler owns the datagram sequence number and the packing rule of the
established agent: a datagram is sent before adding a sample that would make
it reach ``max_bytes``.  It has no clock and no socket: the caller passes the
uptime and a ``send`` callable, so tests drive it deterministically.
"""

from __future__ import annotations

from collections.abc import Callable

from .codec import datagram_header


class DatagramAssembler:
    """Accumulates encoded samples; hands complete datagrams to ``send``."""

    def __init__(self, agent: object, sub_agent_id: int, max_bytes: int, send: Callable[[bytes], None]) -> None:
        self.agent = agent
        self.sub_agent_id = sub_agent_id
        self.max_bytes = max_bytes
        self.send = send
        self.sequence = 0
        self.datagrams_sent = 0
        self.samples_sent = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._header_bytes = len(datagram_header(agent, sub_agent_id, 0, 0, 0))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, sample: bytes, uptime_ms: int) -> None:
        """Queue one encoded sample (TLV form), sending first if it would not fit."""
        if self._pending and self._header_bytes + self._pending_bytes + len(sample) >= self.max_bytes:
            self.flush(uptime_ms)
        self._pending.append(sample)
        self._pending_bytes += len(sample)

    def flush(self, uptime_ms: int) -> None:
        """Send whatever is pending as one datagram."""
        if not self._pending:
            return
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        header = datagram_header(self.agent, self.sub_agent_id, self.sequence, uptime_ms, len(self._pending))
        datagram = header + b"".join(self._pending)
        self.samples_sent += len(self._pending)
        self.datagrams_sent += 1
        self._pending.clear()
        self._pending_bytes = 0
        self.send(datagram)
