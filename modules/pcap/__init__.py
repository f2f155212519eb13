"""pcap { }: 1-in-N packet sampling in the kernel on the chosen interfaces, with counters for each.

Which interfaces and at what rate: ``interfaces.py``.  How: one of two kernel samplers
behind the same interface (``sampler.py``), picked per ``pcap {}`` block by ``sampler``:

* ``ebpf`` (``ebpf.py``): tc programs counting every packet and sampling into a BPF ring
  buffer; the BPF object built with the package, loaded through libbpf (``ebpf_core.py``) on a
  thread of its own (the kernel's verifier takes ~0.8 s, which the loop spends answering),
  else compiled by bcc in a short-lived child process (the agent itself never loads LLVM);
* ``cbpf`` (``cbpf.py``): a random classic BPF filter on an AF_PACKET socket with a
  TPACKET_V3 ring; standard library only;
* ``auto`` (the default): eBPF when it can be loaded, else classic BPF.  When eBPF cannot be
  loaded the reason is logged once and the classic sampler takes every interface; a block
  that asks for ``ebpf`` explicitly falls back the same way, with a warning.

Every ``checkAdaptors`` seconds the interfaces the kernel announced a change of since the last
check (``netlink.LinkChanges``) are read again from /sys, in a thread, and all of them every
``refreshAdaptors`` (2,000 interfaces take most of a second to read, which would stall sampling
on the loop): new matching interfaces are opened, vanished ones closed (with a last counter
sample), changed rates applied in place.  An interface that cannot be opened (missing, no permission,
no tc) is logged once per distinct reason, retried at the next check, and the others carry on.
Opening or closing one takes the kernel 7-47 ms (a tcx link, a packet ring; an RCU grace period
on close): the loop answers between interfaces, so 100 at start are not one stall of 2-5 s.

File descriptors: a classically sampled interface holds two (its socket, and the duplicate
Python's mmap keeps of it), an eBPF-sampled one none of its own.  At start the module raises
the soft RLIMIT_NOFILE to the hard limit (systemd's default hard limit is 524,288); under a
hard limit of 1,024, with the agent's ~40 and 64 kept for the rest of the agent, about 460
classically sampled interfaces fit.  Past that, the fault is logged once and no new
interface is tried until one closes or a reload comes (counted as ``fd_refusals``), rather
than every interface failing again at every check.

``dynamic = on`` blocks sample the interfaces other modules ask for
(``ModuleContext.request_sampling``; ``k8s { }``'s pod veths): a change of the requests
checks the interfaces at once (changes coming together checked once), so a pod's veth is
sampled as soon as the pod is found and closed, with a last counter sample, when it goes.

Each sampled interface gets a counter poller on 0:ifIndex (``counters.py``), its 0:1005 the
name a module gave the port (``ModuleContext.name_port``: a pod's name on its veth), else
the kernel's.  Flow samples go out through the agent's allocation-free path (``FlowPath.interface``) unless an
enricher is active; the eBPF sampler's, encoded in the kernel, go from its ring straight into
the datagram (``ebpf.py``).  After start-up the module freezes the garbage collector's view of
everything allocated so far (``gc.freeze``): the hot path allocates nothing that lives, so
collections stay rare and short.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsflowd_py.config import Settings
from hsflowd_py.counters import Monotonic
from hsflowd_py.module import Module, register
from hsflowd_py.netlink import Announced, LinkChanges
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.privileges import Privileges
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.netclass import InterfaceInfo, read_interface, read_interfaces
from hsflowd_py.sflow.records import Record
from hsflowd_py.tasks import cancel

from .counters import interface_records
from .interfaces import Tap, choose
from .sampler import OutOfDescriptors, Sampler, SamplerError
from .settings import PcapSettings

if TYPE_CHECKING:
    from hsflowd_py.module_context import ModuleContext

log = logging.getLogger("hsflowd.pcap")

SAMPLER_NAMES = {"ebpf": "eBPF", "cbpf": "classic BPF"}


DESCRIPTORS_PER_INTERFACE = 2
"""A classic BPF ring's socket and the duplicate Python's mmap keeps of it."""
DESCRIPTOR_RESERVE = 64
"""Descriptors left to the rest of the agent (status connections, netlink, /proc reads, modules)."""


def _descriptor_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _spare_descriptors() -> int:
    """Descriptors this process may still open (listing /proc/self/fd takes one for itself)."""
    try:
        return _descriptor_limit() - len(os.listdir("/proc/self/fd")) + 1
    except OSError:
        return 0


def _raise_descriptor_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: each classically sampled interface holds a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("pcap: file descriptor limit raised from %d to %d", soft, hard)


@dataclass
class _Open:
    """A sampled interface: its tap, the sampler holding it, its counter state."""

    tap: Tap
    sampler: Sampler
    monotonic: Monotonic = field(default_factory=Monotonic)
    last_records: list[Record] | None = None


@register
class PcapModule(Module):
    name = "pcap"
    settings_type = PcapSettings

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.samplers: dict[str, Sampler] = {}
        self.ebpf_unavailable: str | None = None
        self.open: dict[int, _Open] = {}
        self._logged: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._requests_changed = False
        self._requests_task: asyncio.Task[None] | None = None
        self._fds_full_at: int | None = None
        """How many interfaces were open when descriptors ran out; None while there are some left."""
        self._links: LinkChanges | None = None
        self._infos: dict[int, InterfaceInfo] = {}
        """Every interface as last read, by ifindex: what a check re-chooses from."""

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        _raise_descriptor_limit()
        if any(b.sampler != "cbpf" for b in self.settings.pcap):
            await self._ebpf()  # now, while the agent may still load programs
        self.context.serve_sampling_requests(self._on_requests)  # before: none made meanwhile is missed
        self._links = LinkChanges(self.context.root)  # before the first read: no change in between is missed
        await self.reconcile()
        self._watch = asyncio.create_task(self._watch_interfaces())
        gc.freeze()

    async def stop(self) -> None:
        self._stopped = True  # a reconcile still pending (SIGHUP) must not reopen anything
        self.context.serve_sampling_requests(None)
        await cancel(self._watch, self._requests_task, *self._tasks)
        async with self._lock:
            for ifindex in list(self.open):
                self._close(ifindex, final=False)
            for sampler in self.samplers.values():
                sampler.stop()
            self.samplers.clear()
            if self._links is not None:
                self._links.close()
                self._links = None

    def reconfigure(self, settings: Settings) -> None:
        """New rates or header size apply at once, not at the next interface check."""
        self.settings = settings
        self._fds_full_at = None  # a reload is the operator's word to try again
        task = asyncio.get_running_loop().create_task(self._checked_reconcile())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_interfaces(self) -> None:
        while True:
            await asyncio.sleep(self.settings.check_adaptors)
            await self._checked_reconcile()

    def _on_requests(self) -> None:
        """Sampling requests changed: check the interfaces, once for a burst of changes (pods found together)."""
        self._requests_changed = True
        if self._requests_task is None or self._requests_task.done():
            self._requests_task = asyncio.get_running_loop().create_task(self._serve_requests())

    async def _serve_requests(self) -> None:
        while self._requests_changed:
            self._requests_changed = False
            await self._checked_reconcile()

    async def _checked_reconcile(self) -> None:
        try:
            await self.reconcile()
        except Exception:  # keep watching: the next check may succeed
            self.stats["reconcile_errors"] += 1
            if self.stats["reconcile_errors"] == 1:
                log.exception("pcap: checking the interfaces failed (further failures counted)")

    def privileges(self) -> Privileges:
        """Raw sockets and tc hooks for interfaces that appear after start-up.  With eBPF, also the bpf()
        calls on its maps: kernels before 6.5 refuse any bpf() call without CAP_BPF while
        kernel.unprivileged_bpf_disabled is set (the default)."""
        caps = {"CAP_NET_RAW", "CAP_NET_ADMIN"}
        if "ebpf" in self.samplers:
            caps.add("CAP_BPF")
        return Privileges(caps)

    # ---------------------------------------------------------------- samplers

    def _once(self, key: str, message: str, level: int = logging.WARNING) -> None:
        """Log a fault once per distinct message for the same key (an interface, a sampler)."""
        if self._logged.get(key) != message:
            self._logged[key] = message
            log.log(level, "pcap: %s", message)

    async def _ebpf(self) -> Sampler | None:
        sampler = self.samplers.get("ebpf")
        if sampler is None and self.ebpf_unavailable is None:
            from .ebpf import EbpfSampler  # pyroute2 and the build process only when eBPF is wanted

            try:
                context = self.context
                sampler = await EbpfSampler.create(context.flow_interface, context.root, context.encoded_flows())
                self.samplers["ebpf"] = sampler
            except (SamplerError, OSError) as e:
                self.ebpf_unavailable = str(e)
                log.warning("pcap: the eBPF sampler is unavailable (%s); using the classic BPF sampler", e)
        return sampler

    async def _sampler_for(self, tap: Tap) -> Sampler:
        if tap.sampler != "cbpf":
            sampler = await self._ebpf()
            if sampler is not None:
                return sampler
            if tap.sampler == "ebpf":
                self._once(f"fallback {tap.name}", f"{tap.name}: sampler = ebpf, but eBPF is unavailable: classic BPF")
        return self._cbpf()

    def _cbpf(self) -> Sampler:
        sampler = self.samplers.get("cbpf")
        if sampler is None:
            from .cbpf import CbpfSampler  # only when an interface is sampled classically

            sampler = self.samplers["cbpf"] = CbpfSampler(self.context.flow_interface, self.context.root)
        return sampler

    # ---------------------------------------------------------------- interfaces

    async def reconcile(self) -> None:
        """Bring the open interfaces in line with the interface list and the settings."""
        async with self._lock:
            if self._stopped:
                return
            links = self._links
            announced = Announced(everything=True) if links is None else links.changes(self.settings.refresh_adaptors)
            if announced.everything or announced.links:
                try:
                    self._infos = await asyncio.to_thread(self._read, announced, dict(self._infos))
                except BaseException as e:
                    if links is not None:
                        links.read_all_next()  # what was announced is read at the next check
                    if not isinstance(e, ReaderError):
                        raise
                    self._once("interfaces", f"cannot list interfaces: {e}")
                    return
            infos = sorted(self._infos.values(), key=lambda i: i.ifindex)
            wanted = choose(infos, self.settings, self.context.sampling_requests)
            present = {i.name for i in infos}
            for block in self.settings.pcap:
                if block.dev is not None and block.dev not in present:
                    self._once(f"dev {block.dev}", f"device not found: {block.dev}", logging.INFO)
            for ifindex, current in list(self.open.items()):
                tap = wanted.get(ifindex)
                if tap is None or tap.name != current.tap.name or tap.sampler != current.tap.sampler:
                    self._close(ifindex, final=True)
                    await asyncio.sleep(0)  # the loop answers between interfaces (each a kernel wait)
            spare = _spare_descriptors()
            for ifindex, tap in wanted.items():
                current = self.open.get(ifindex)
                if current is None:
                    if self._fds_full_at is not None and len(self.open) >= self._fds_full_at:
                        self.stats["fd_refusals"] += 1
                        continue
                    if spare < DESCRIPTOR_RESERVE + DESCRIPTORS_PER_INTERFACE:
                        self._out_of_descriptors(tap, f"{spare} file descriptors left, {DESCRIPTOR_RESERVE} kept")
                        continue
                    await self._open(tap)
                    await asyncio.sleep(0)
                    spare -= DESCRIPTORS_PER_INTERFACE
                elif current.tap != tap:
                    current.sampler.update(tap)
                    current.tap = tap
                    log.info("pcap: %s now sampled 1-in-%d", tap.name, tap.sampling_rate)

    def _read(self, announced: Announced, known: dict[int, InterfaceInfo]) -> dict[int, InterfaceInfo]:
        """(On a thread.)  ``known`` with the announced links read again, or every interface read."""
        root = self.context.root
        if announced.everything:
            self.stats["full_reads"] += 1
            return {i.ifindex: i for i in read_interfaces(root)}
        for ifindex, name in announced.links.items():
            known.pop(ifindex, None)
            info = None if name is None else read_interface(root, name)
            if info is not None:  # else gone (or moved to another namespace) since the announcement
                known[info.ifindex] = info
            self.stats["links_read"] += 1
        return known

    async def _open(self, tap: Tap) -> None:
        sampler = await self._sampler_for(tap)
        try:
            sampler.open(tap)
        except OutOfDescriptors as e:
            self.stats["open_failures"] += 1
            self._out_of_descriptors(tap, str(e))
            return
        except (SamplerError, OSError) as e:
            self.stats["open_failures"] += 1
            if sampler.kind == "cbpf" or tap.sampler != "auto":
                self._once(f"open {tap.ifindex}", f"cannot sample {tap.name}: {e}")
                return
            self._once(f"open {tap.ifindex}", f"{tap.name}: eBPF cannot sample it ({e}); trying classic BPF")
            sampler = self._cbpf()
            try:
                sampler.open(tap)
            except (SamplerError, OSError) as e2:
                self._once(f"open cbpf {tap.ifindex}", f"cannot sample {tap.name}: {e2}")
                return
        self._logged.pop(f"open {tap.ifindex}", None)
        self._logged.pop(f"dev {tap.name}", None)
        entry = self.open[tap.ifindex] = _Open(tap, sampler)
        self.context.add_poller(PollerSpec(0, tap.ifindex, lambda: self._collect(entry), f"pcap {tap.name}"))
        log.info(
            "pcap: sampling %s (ifIndex %d) 1-in-%d with the %s sampler",
            tap.name,
            tap.ifindex,
            tap.sampling_rate,
            SAMPLER_NAMES[sampler.kind],
        )

    def _out_of_descriptors(self, tap: Tap, why: str) -> None:
        """No interface more until one closes or a reload: said once, not at every check."""
        if self._fds_full_at is None:
            log.warning(
                "pcap: cannot sample %s nor any further interface: %s (RLIMIT_NOFILE %d, %d interfaces sampled); "
                "tried again when one closes or on reload",
                tap.name,
                why,
                _descriptor_limit(),
                len(self.open),
            )
        self._fds_full_at = len(self.open)

    def _close(self, ifindex: int, final: bool) -> None:
        """Stop sampling an interface.  Its flow sequence restarts too: a sampler that opens it again
        counts its sample pool and drops from 0, and sequence number 1 is how sFlow tells a collector
        that the data source restarted (a pool going backwards under a running sequence looks like loss)."""
        entry = self.open.pop(ifindex)
        self._fds_full_at = None
        try:
            entry.sampler.close(ifindex)
        except (SamplerError, OSError) as e:
            log.warning("pcap: closing %s: %s", entry.tap.name, e)
        self.context.restart_flow_sequence(ifindex)
        self.context.remove_poller(0, ifindex, final=entry.last_records if final else None)
        log.info("pcap: stopped sampling %s (ifIndex %d)", entry.tap.name, ifindex)

    def _collect(self, entry: _Open) -> list[Record] | None:
        """The interface's counter sample; None (skip the round) if it is gone or was renamed."""
        try:
            info = read_interface(self.context.root, entry.tap.name)
        except ReaderError as e:
            self._once(f"counters {entry.tap.ifindex}", f"counters of {entry.tap.name}: {e}")
            return None
        if info is None or info.ifindex != entry.tap.ifindex:
            return None
        entry.last_records = interface_records(info, entry.monotonic, self.context.port_name(info.ifindex))
        return entry.last_records

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.stats)
        out["interfaces"] = len(self.open)
        if self._links is not None:
            out.update(self._links.stats)
        for kind, sampler in self.samplers.items():
            for key, value in sampler.status().items():
                out[f"{kind}_{key}"] = value
        return out
