"""What a module may use of the core: a narrow, typed face of the agent.

A module gets a :class:`ModuleContext`, never the :class:`~hsflowd_py.agent.Agent`, so a change
inside the agent or the flow path cannot break a module without a type error here first.  Modules
share nothing directly: what one learns about a packet for another (a namespace, a socket) travels
on the packet itself, declared by the enrichers (``enrichers.py``).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .flow_path import EncodedFlows
from .pollers import PollerSpec
from .sflow.records import HostDescription, Record
from .sflow.samples import DiscardSample

if TYPE_CHECKING:
    from .ds_index import DsIndexes
    from .flow_path import FlowPath, SampledInterface
    from .host_counters import HostCounters
    from .receivers import Receivers

T = TypeVar("T")


@dataclass(frozen=True)
class Discovered:
    """Collectors and settings learned at run time (DNS-SD); None collectors = not in use."""

    collectors: tuple[tuple[str, int], ...] | None = None
    overrides: tuple[tuple[str, Any], ...] = ()


class Core(Protocol):
    """The parts of the agent the context stands for (the Agent has them)."""

    root: Path
    uuid: uuid.UUID
    rng: random.Random
    host: HostCounters
    ds_indexes: DsIndexes
    flows: FlowPath
    receivers: Receivers
    discovered: Discovered
    container_ifindexes: set[int]

    def add_poller(self, spec: PollerSpec) -> object: ...

    def remove_poller(self, ds_class: int, ds_index: int, final: list[Record] | None = None) -> None: ...

    def set_discovered(self, discovered: Discovered) -> None: ...


class ModuleContext:
    """Everything a module may ask of the core; one per agent, shared by its modules."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._port_names: dict[int, str] = {}
        self._sampling_requests: set[int] = set()
        self._on_sampling_requests: Callable[[], None] | None = None

    # ------------------------------------------------------------ identity

    @property
    def root(self) -> Path:
        """Where /proc and /sys are read from (a test's fake tree, or /)."""
        return self._core.root

    @property
    def host_uuid(self) -> uuid.UUID:
        return self._core.uuid

    @property
    def rng(self) -> random.Random:
        """The agent's random source, so tests can make phases and delays repeatable."""
        return self._core.rng

    def describe(self, hostname: str | None, host_uuid: uuid.UUID) -> HostDescription:
        """A 2000 record: the host's (``host_uuid``), or a data source's of this host with its own
        hostname or UUID (a container, a systemd service); None takes the kernel's hostname."""
        return self._core.host.description(hostname, host_uuid)

    # -------------------------------------------------------- data sources

    def add_poller(self, spec: PollerSpec) -> None:
        """Poll ``spec.collect`` every interval as data source ``ds_class:ds_index`` (``first_now``:
        from the next tick); its ``read`` runs off the loop, in a batch with other pollers' and
        within a per-tick budget, right before ``collect``."""
        self._core.add_poller(spec)

    def remove_poller(self, ds_class: int, ds_index: int, final: list[Record] | None = None) -> None:
        """Stop polling a data source, sending ``final`` as its last counter sample first."""
        self._core.remove_poller(ds_class, ds_index, final)

    def allocate_ds_index(self, source_uuid: bytes) -> int:
        """A dsIndex for a virtual data source, the same one again for the same UUID while remembered."""
        return self._core.ds_indexes.allocate(source_uuid)

    def release_ds_index(self, source_uuid: bytes) -> None:
        """The data source is gone; its dsIndex is kept for it a while, then reused."""
        self._core.ds_indexes.release(source_uuid)

    def claim_container_ports(self, ifindexes: Iterable[int]) -> None:
        """These host interfaces are containers' ports: the host sample's adaptors leave them out."""
        self._core.container_ifindexes.update(ifindexes)

    def release_container_ports(self, ifindexes: Iterable[int]) -> None:
        self._core.container_ifindexes.difference_update(ifindexes)

    # ------------------------------------------------------------ host ports

    def name_port(self, ifindex: int, name: str) -> None:
        """The host interface ``ifindex`` goes by ``name`` in its counter samples' 0:1005 (a pod's
        veth by the pod's name, as the established agent's ``k8s { setIfName setIfAlias }``)."""
        self._port_names[ifindex] = name

    def unname_port(self, ifindex: int) -> None:
        self._port_names.pop(ifindex, None)

    def port_name(self, ifindex: int) -> str | None:
        """The name given by :meth:`name_port`, None for the kernel's own (what counter samples send)."""
        return self._port_names.get(ifindex)

    def request_sampling(self, ifindex: int) -> None:
        """Ask for packet sampling on a host interface (a pod's veth): the ``pcap { dynamic = on }``
        blocks whose other criteria it meets sample it, until :meth:`release_sampling`.  Requests
        are kept while no sampler runs, and served once one does."""
        if ifindex not in self._sampling_requests:
            self._sampling_requests.add(ifindex)
            self._sampling_requests_changed()

    def release_sampling(self, ifindex: int) -> None:
        if ifindex in self._sampling_requests:
            self._sampling_requests.discard(ifindex)
            self._sampling_requests_changed()

    @property
    def sampling_requests(self) -> frozenset[int]:
        return frozenset(self._sampling_requests)

    def serve_sampling_requests(self, on_change: Callable[[], None] | None) -> None:
        """The sampler (pcap) is called back, on the loop, whenever the requests change; None when it stops."""
        self._on_sampling_requests = on_change

    def _sampling_requests_changed(self) -> None:
        if self._on_sampling_requests is not None:
            self._on_sampling_requests()

    # --------------------------------------------------------------- flows

    def flow_interface(self, ifindex: int, sampling_rate: int, ethernet: bool) -> SampledInterface:
        """The flow path's entry for a sampler's interface (``FlowPath.interface``): what its samples
        share, set once; the sampler calls its ``emit`` per packet (``flow.Emit``), and asks again
        when the interface's rate changes."""
        return self._core.flows.interface(ifindex, sampling_rate, ethernet)

    def encoded_flows(self) -> EncodedFlows:
        """The flow path's face for a sampler that encodes samples itself (eBPF, in the kernel): it numbers
        them in the interfaces' sequences and adds them to the datagrams while no enricher needs the packet."""
        return EncodedFlows(self._core.flows)

    def send_discard(self, sample: DiscardSample) -> None:
        """Send a discard sample (0:5): its sampled header through the flow enrichers (markTraffic's
        0:2210 included), numbered in its data source's sequence, in datagrams of discard samples only."""
        self._core.flows.emit_discard(sample)

    def restart_flow_sequence(self, ifindex: int) -> None:
        """The interface stopped being sampled: its next flow sample starts a new sequence."""
        self._core.flows.restart_sequence(ifindex)

    # ----------------------------------------------- collectors (DNS-SD)

    @property
    def discovered(self) -> Discovered:
        return self._core.discovered

    def set_discovered(self, discovered: Discovered) -> None:
        """Collectors and settings learned at run time; a change is applied at once."""
        self._core.set_discovered(discovered)

    def collector_labels(self) -> list[str]:
        """The collectors datagrams now go to, as ``host:port`` for logs."""
        return [r.label for r in self._core.receivers.receivers]
