"""Flow enrichers: what a module adds to sampled packets, and the order the core runs them in.

A module that enriches flow samples returns :class:`Enricher` objects from its ``enrichers()``
hook (``module.py``), and only the ones its settings need: the core asks again after every
start, reload and settings change, and with no enricher at all it packs each sample straight
from the sampler's ring with nothing allocated (``flow_path.py``).  ``docker {}`` without
``markTraffic`` returns none, so it costs nothing per sample.

An enricher declares what it reads and writes of the packet's typed annotation
(:class:`~hsflowd_py.flow.Fact`: ``netns``, ``cgroup_id``/``socket_inode``, the 0:2210 sides);
the core orders enrichers from those declarations (a writer before its readers, modules by name
otherwise) instead of by hand-picked numbers.  Today's enrichers:

========================  ===========  ================  ==========================================
enricher                  reads        writes            what
========================  ===========  ================  ==========================================
docker ``markTraffic``    —            NETNS, ENTITIES   containers by MAC/IP; the container's netns
k8s ``markTraffic``       —            NETNS, ENTITIES   pods by MAC/IP (docker's enricher, its own table)
tcp                       NETNS        SOCKET            0:2209 from sock_diag, in that netns
systemd ``markTraffic``   SOCKET       ENTITIES          services by cgroup id / socket inode
k8s ``markTraffic``       SOCKET       ENTITIES          hostNetwork pods by cgroup id
========================  ===========  ================  ==========================================

Discard samples (0:5, ``dropmon {}``) take the same way: their sampled header reaches the same
enrichers as a :class:`~hsflowd_py.flow.DiscardPacket` (a ``SampledPacket`` whose interface is
the one the packet came in on, else the one it was leaving through), held the same way, so an
enricher marks a dropped packet of a container or service as it marks a sampled one, without
telling them apart.

``enrich(packet)`` runs on the agent's loop for every sample, so it must be cheap; it adds
records to ``packet.extra`` and sets the facts it writes.  It answers at once (None) when it can,
or returns an awaitable when it must wait (a look-up not yet answered): the core then holds the
sample, at most the hold time (400 ms), and calls the enrichers that read what this one writes
only once every awaitable so far has completed.  An awaitable should be shared by the samples
waiting for the same answer: a future per sample costs more than the sample.  A failing
``enrich`` is counted against its module and logged once.

Porting an ``enrich`` hook written against the earlier contract (``Module.enrich``,
``enrich_order``, ``packet.notes``): move the method into an :class:`Enricher` subclass, return
it from ``Module.enrichers()`` when the settings ask for it, declare ``reads``/``writes``
instead of ``enrich_order``, and use the typed fields instead of ``notes`` keys (``"netns"`` →
``packet.netns``, ``"cgroup_id"`` → ``packet.cgroup_id``, ``"socket_inode"`` →
``packet.socket_inode``; ``"holds"`` is gone: declare ``reads`` and the core waits).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import ClassVar, TypeVar

from .flow import Fact, Header, Interface, SampledPacket

M = TypeVar("M")

Records = tuple[bytes, int]
"""Records for the end of a flow sample, encoded back to back, and how many."""
NO_RECORDS: Records = (b"", 0)
"""``at_once``'s answer for a packet that gets no records: this object, so that a sampler can tell such
packets apart in bulk (``operator.is_``)."""


class Enricher:
    """Adds records or facts to sampled packets; see the module docstring for the contract."""

    reads: ClassVar[Fact] = Fact.NONE
    writes: ClassVar[Fact] = Fact.NONE

    def enrich(self, packet: SampledPacket) -> Awaitable[None] | None:
        """Annotate ``packet``; return an awaitable to hold it until the answer is in."""
        raise NotImplementedError

    def at_once(self, interface: Interface, header: Header, start: int, length: int) -> Records | None:
        """The records ``enrich`` would add to the packet of ``header[start:start+length]``, encoded,
        when they are known at once from the header alone; None: ask ``enrich``.

        The flow path asks this first where this is the only enricher running: the facts ``enrich``
        would write are then read by no one, so the sample need not become a ``SampledPacket`` (the
        tcp module's memo hits: ``flow_path.py``).  By default every packet goes to ``enrich``.
        """
        return None

    def at_once_many(
        self, interface: Interface, ring: Header, offset: int, stride: int, lengths: list[int]
    ) -> list[Records | None]:
        """``at_once`` of each packet of a sampler's ring read in one go (eBPF): the records lie ``stride``
        bytes apart in ``ring``, each with its packet's header ``offset`` bytes in, ``lengths`` the headers'
        lengths.  One call per drain lets an enricher answer all the packets of one flow once."""
        return [self.at_once(interface, ring, offset + i * stride, length) for i, length in enumerate(lengths)]


class EnricherCycle(ValueError):
    """Two enrichers each read what the other writes: no order serves both."""


def order_enrichers(pairs: Iterable[tuple[M, str, Enricher]]) -> list[tuple[M, Enricher]]:
    """(owner, enricher) pairs in run order: every writer of a fact before its readers.

    ``pairs`` are (owner, owner's name, enricher); ties are broken by the name, so the order
    never depends on the order modules started in.
    """
    todo = sorted(pairs, key=lambda p: p[1])
    out: list[tuple[M, Enricher]] = []
    while todo:
        for i, (owner, _, e) in enumerate(todo):
            if not any(other.writes & e.reads for j, (_, _, other) in enumerate(todo) if j != i):
                out.append((owner, e))
                del todo[i]
                break
        else:
            names = ", ".join(f"{name} {type(e).__name__}" for _, name, e in todo)
            raise EnricherCycle(f"enrichers read each other's facts: {names}")
    return out
