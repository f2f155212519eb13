"""Pack encoded samples into datagrams for one agent address and sub-agent.

The assembler owns the datagram sequence number and the packing rule of the
established agent: a datagram is sent before adding a sample that would make
it reach ``max_bytes``.  It has no clock and no socket: the caller passes the
uptime and a ``send`` callable, so tests drive it deterministically.

The datagram is built in one preallocated buffer: ``add`` copies an encoded
sample into it, and ``reserve`` hands the flow samplers' fast path a place to
encode a sample in place, so that a sampled packet costs no bytes object of
its own on its way out.  A sampler that encodes samples itself (the eBPF sampler, in the
kernel) hands them over a datagram's worth at a time: copied in behind the pending ones
(``add_samples``), or, when they fill datagrams of their own, sent at once in a
``DatagramBatch``, where their samples are copied (``send_samples``) or left where they lie for the
kernel to read (``send_in_place``).  Not as one ``sendmsg`` with UDP segmentation offload: a capture on the
sending host (tcpdump, tshark, a pcap-reading collector) would see each run as one packet of
concatenated datagrams and decode only the first.
Discard samples (0:5) travel in datagrams of their own: a collector that does not know the
sample type (pmacct) abandons the rest of its datagram, flow and counter samples included.
A sample that cannot be encoded (a value out of its
field's range) must leave no hole: the fast path gives its room back
(``unreserve``), and the counted, once-logged drop is :func:`unencodable`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from ..datagram_batch import DatagramBatch
from .codec import datagram_header

log = logging.getLogger("hsflowd.assembler")

_TAIL = struct.Struct(">III")
"""The datagram header's last words: sequence number, uptime, number of samples."""
UNENCODABLE = (struct.error, OverflowError, ValueError, TypeError)
"""What packing a value that does not fit its XDR field (or is not a number at all) raises."""


def unencodable(stats: dict[str, int], what: str, error: Exception) -> None:
    """Count a sample dropped because it cannot be encoded; the first is logged with the reason.

    Sending it would corrupt the datagram (collectors reject a whole datagram with a bad sample,
    counter samples of other sources included), so it is left out."""
    stats["unencodable_samples"] = stats.get("unencodable_samples", 0) + 1
    if stats["unencodable_samples"] == 1:
        log.warning("%s cannot be encoded, left out (further ones counted, not logged): %s", what, error)


class DatagramAssembler:
    """Accumulates encoded samples; hands complete datagrams to ``send``, a list or a batch at a time."""

    def __init__(
        self, agent: object, sub_agent_id: int, max_bytes: int, send: Callable[[list[bytes] | DatagramBatch], None]
    ) -> None:
        self.agent = agent
        self.sub_agent_id = sub_agent_id
        self.max_bytes = max_bytes
        self.send = send
        self.batch = DatagramBatch()
        """Datagrams handed to ``send`` many at once (``send_samples``, ``send_in_place``); ``send`` is done
        with them when it returns."""
        self.sequence = 0
        self.datagrams_sent = 0
        self.samples_sent = 0
        header = datagram_header(agent, sub_agent_id, 0, 0, 0)
        self._header_bytes = len(header)
        self._prefix = header[: -_TAIL.size]
        """The header's words up to the sequence number, the same in every datagram."""
        self.buffer = bytearray(max_bytes)
        """The datagram being built: header space, then ``pending`` samples up to ``_end``."""
        self._end = self._header_bytes
        self._count = 0
        self._discards = False
        """Whether the pending samples are discard samples."""

    @property
    def pending(self) -> int:
        return self._count

    def add(self, sample: bytes, uptime_ms: int, discards: bool = False) -> None:
        """Queue one encoded sample (TLV form), sending first if it would not fit; ``discards``: it is a
        discard sample, which never shares a datagram with the others."""
        off = self.reserve(len(sample), uptime_ms, discards)
        self.buffer[off : off + len(sample)] = sample

    def reserve(self, size: int, uptime_ms: int, discards: bool = False) -> int:
        """Room for one sample of ``size`` bytes, sending first if it would not fit or the pending
        samples are of the other kind (discard or not).

        The caller writes the sample into ``buffer`` at the returned offset before anything
        else touches the assembler.  A sample larger than the limit travels alone.
        """
        if self._count and (self._end + size >= self.max_bytes or discards != self._discards):
            self.flush(uptime_ms)
        self._discards = discards
        off = self._end
        self._end = end = off + size
        if end > len(self.buffer):
            self.buffer.extend(bytes(end - len(self.buffer)))
        self._count += 1
        return off

    def room(self, uptime_ms: int) -> int:
        """Bytes the flow samples added next may have in all and still join the datagram being built
        (pending discard samples are sent first: the two never share a datagram)."""
        if self._discards:
            self.flush(uptime_ms)
            self._discards = False
        return self.max_bytes - 1 - self._end

    @property
    def capacity(self) -> int:
        """Bytes of samples an empty datagram holds: the kernel builds its datagrams to this."""
        return self.max_bytes - 1 - self._header_bytes

    def add_samples(self, samples: bytes | memoryview, count: int) -> None:
        """Queue ``count`` encoded flow samples, one after the other in ``samples``, within ``room`` (the eBPF
        sampler's hot path: one call per datagram)."""
        off = self._end
        self._end = end = off + len(samples)
        if end > len(self.buffer):
            self.buffer.extend(bytes(end - len(self.buffer)))
        self.buffer[off:end] = samples
        self._count += count

    def unreserve(self, off: int) -> None:
        """Give back the room the last ``reserve`` returned (at ``off``): its sample could not be
        written, and a blank sample would make collectors reject the whole datagram."""
        self._end = off
        self._count -= 1

    def flush(self, uptime_ms: int) -> None:
        """Send whatever is pending as one datagram."""
        if self._count:
            self.send([self._take(uptime_ms)])

    def _take(self, uptime_ms: int) -> bytes:
        """The pending samples as the next datagram; the buffer emptied."""
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        header = self._prefix + _TAIL.pack(self.sequence, uptime_ms & 0xFFFFFFFF, self._count)
        self.buffer[: self._header_bytes] = header
        datagram = bytes(self.buffer[: self._end])
        self.samples_sent += self._count
        self.datagrams_sent += 1
        self._count = 0
        self._end = self._header_bytes
        return datagram

    def send_samples(self, datagrams: list[tuple[int, tuple[bytes | memoryview, ...]]], uptime_ms: int) -> int:
        """Send datagrams of encoded flow samples, each given as its number of samples and the pieces they
        are in (the samples one after the other), within an empty datagram's ``room``, after what is
        pending: the bcc-built eBPF sampler's hot path.  Each datagram's pieces are joined into the batch.
        Returns the samples sent."""
        joined = [(n, b"".join(pieces)) for n, pieces in datagrams]
        return self._send_numbered([(n, body, len(body)) for n, body in joined], uptime_ms, copy=True)

    def send_in_place(self, datagrams: list[tuple[int, int, int]], uptime_ms: int) -> int:
        """Send datagrams of encoded flow samples, each given as its number of samples and where they lie
        (address, length: memory mapped and unchanged until this returns, a BPF ring's records), within an
        empty datagram's ``room``, after what is pending: the eBPF sampler's hot path, where the kernel
        reads each datagram's samples from the ring.  Returns the samples sent."""
        return self._send_numbered(datagrams, uptime_ms, copy=False)

    def _send_numbered(self, datagrams: list[tuple[int, Any, int]], uptime_ms: int, copy: bool) -> int:
        """Number ``datagrams`` (samples, body, its length; the body bytes to ``copy`` into the batch, or
        its address) behind what is pending, and send them, a batch at a time."""
        self.flush(uptime_ms)
        batch = self.batch
        uptime = uptime_ms & 0xFFFFFFFF
        prefix, tail = self._prefix, _TAIL.pack
        sequence = self.sequence
        count = 0
        for n, body, length in datagrams:
            if not batch.has_room(length if copy else 0):
                self.send(batch)
                batch.clear()
            sequence = sequence + 1 & 0xFFFFFFFF
            if copy:
                batch.add_copy(prefix + tail(sequence, uptime, n), body)
            else:
                batch.add(prefix + tail(sequence, uptime, n), body, length)
            count += n
        self.sequence = sequence
        self.samples_sent += count
        self.datagrams_sent += len(datagrams)
        self.send(batch)
        batch.clear()
        return count
