"""The agent: settings, modules, pollers and the way out to the collectors.

Everything meets here on one asyncio loop: modules feed sampled packets (through
the flow path, ``flow_path.py``) and counter records in, the core wraps them into
samples, the codec encodes them, the assembler packs datagrams, and the receivers
send each one to every collector.  One tick a second fires due pollers and
flushes what is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import module as module_api
from . import status
from .agent_address import LocalAddress, local_addresses, select_agent_address
from .autofile import AutoFile, Effective
from .config import ConfigError, Settings, load_config
from .ds_index import DsIndexes
from .enrichers import EnricherCycle
from .flow_path import FlowPath
from .host_counters import HostCounters
from .module_context import Discovered, ModuleContext
from .netns import in_new_thread
from .pidfile import AlreadyRunning, InstanceLock, PidFile
from .pollers import Poller, PollerSpec
from .readers.identity import host_uuid
from .receivers import Receivers, Target
from .sched_slice import request_slice
from .sflow import records as rec
from .sflow.assembler import UNENCODABLE, DatagramAssembler, unencodable
from .sflow.codec import encode_sample
from .sflow.samples import CounterSample

log = logging.getLogger("hsflowd")

HOST_DS = (2, 1)
ENRICH_TIMEOUT_S = 0.4
READS_PER_TICK = 40
"""Pollers whose blocking ``read`` runs in one tick's batch; more due wait for the next tick (each
read holds the interpreter lock for a fraction of a millisecond, and 200 containers read in
one batch were a 140 ms stall of the loop)."""


def virtual_node(host_records: list[rec.Record], domains: int) -> rec.Record:
    """0:2100 from the host sample's own CPU and memory records (zeros where a reader failed)."""
    cpu = next((r for r in host_records if isinstance(r, rec.HostCpu)), rec.HostCpu())
    mem = next((r for r in host_records if isinstance(r, rec.HostMemory)), rec.HostMemory())
    return rec.VirtNode(
        mhz=cpu.cpu_speed, cpus=cpu.cpu_num, memory=mem.mem_total, memory_free=mem.mem_free, num_domains=domains
    )


class Agent:
    """A running Host sFlow agent."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: str | None = None,
        auto_path: str | None = None,
        uuid_override: bytes | None = None,
        root: Path = Path("/"),
        rng: random.Random | None = None,
        status_path: str | None = None,
        keep_root: bool = True,
        skip_unsupported: bool = False,
        pid_path: str | None = None,
    ) -> None:
        self.file_settings = settings
        self.skip_unsupported = skip_unsupported
        self.config_path = config_path
        self.root = root
        self.status_path = status_path
        self.keep_root = keep_root
        self.pid_path = pid_path
        self.privileges_kept: Any = None
        """What the agent kept when it stopped being root; None while it is root."""
        self.rng = rng or random.Random()
        self.started = time.monotonic()
        self.receivers = Receivers()
        self.autofile = AutoFile(auto_path)
        self.ds_indexes = DsIndexes(settings.forget_vms)
        self.host = HostCounters(root)
        self.discovered = Discovered()
        self.settings = settings
        self.uuid = host_uuid(root, uuid.UUID(bytes=uuid_override) if uuid_override else settings.uuid)
        self.pollers: dict[tuple[int, int], Poller] = {}
        self.modules: dict[str, module_api.Module] = {}
        self.container_ifindexes: set[int] = set()
        self._host_read: list[rec.Record] | None = None
        """The host's own records read off the loop for the next host sample (``read_host``)."""
        self.agent_address: Any = None
        self.agent_dev: str | None = None
        self._stopping = asyncio.Event()
        self._modules_lock = asyncio.Lock()
        """Held while modules start or stop, so two SIGHUPs in a row cannot start one module twice."""
        self._reloads: set[asyncio.Task[bool]] = set()
        self._pending_apply: asyncio.Task[None] | None = None
        """Discovered settings waiting for the module lock (``set_discovered``)."""
        self.stats: dict[str, int] = dict.fromkeys(
            ("flow_samples", "counter_samples", "enrich_timeouts", "faults", "unencodable_samples"), 0
        )
        self.flows = FlowPath(self.stats, self.uptime_ms, self._guard, ENRICH_TIMEOUT_S)
        self.context = ModuleContext(self)
        """What modules see of the agent."""

    # ------------------------------------------------------------ time, identity

    @property
    def assembler(self) -> DatagramAssembler | None:
        """The datagram being built, for counter and flow samples alike; kept on the flow path,
        whose per-packet code reads it most."""
        return self.flows.assembler

    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def _effective_settings(self) -> Settings:
        """File settings with the discovered ones on top; a dict (``sampling.<speed>``) is merged key by key."""
        s = self.file_settings
        if self.discovered.overrides:
            changes = {
                name: {**current, **value} if isinstance(current := getattr(s, name), dict) else value
                for name, value in self.discovered.overrides
            }
            s = replace(s, **changes)
        return s

    def collector_targets(self) -> list[Target]:
        if self.discovered.collectors is not None:
            return [(host, port, None) for host, port in self.discovered.collectors]
        return [(c.ip, c.udpport, c.dev) for c in self.settings.collectors]

    @staticmethod
    def _local_addresses() -> list[LocalAddress]:
        try:
            return local_addresses()
        except Exception:  # psutil failure must not stop sampling
            log.exception("cannot list local addresses")
            return []

    def refresh_agent_address(self, addresses: list[LocalAddress] | None = None) -> None:
        """Pick the agent address; a change restarts datagram sequence numbers and uptime.

        The periodic check lists the addresses in a thread and passes them: with thousands of
        interfaces the listing would otherwise stall sampling on the loop."""
        s = self.settings
        if addresses is None:
            addresses = self._local_addresses()
        address = select_agent_address(addresses, s.agent_ip, s.agent_dev, s.agent_cidrs)
        if address is None:
            address = select_agent_address([], "127.0.0.1")
        dev = next((a.ifname for a in addresses if a.ip == address), None)
        sub_agent = s.sub_agent()
        a = self.assembler
        if a and a.agent == address and a.sub_agent_id == sub_agent and a.max_bytes == s.datagram_bytes:
            return
        if a:
            a.flush(self.uptime_ms())
            if a.agent != address:
                log.info("agent address changed from %s to %s", a.agent, address)
                self.started = time.monotonic()
        self.agent_address, self.agent_dev = address, dev
        self.flows.assembler = DatagramAssembler(address, sub_agent, s.datagram_bytes, self.receivers.send)

    def write_autofile(self) -> None:
        s = self.settings
        self.autofile.update(
            Effective(
                hostname=socket.gethostname(),
                sampling=s.sampling,
                header_bytes=s.header_bytes,
                datagram_bytes=s.datagram_bytes,
                polling=s.polling,
                collectors=tuple((host, port) for host, port, _ in self.collector_targets()),
                agent_ip=str(self.agent_address),
                agent_dev=self.agent_dev,
                application_sampling=tuple(s.sampling_by_application.items()),
                application_polling=tuple(s.polling_by_application.items()),
            )
        )

    # --------------------------------------------------------------- settings

    def apply_settings(self) -> None:
        """Make the effective settings (file + discovered) current everywhere."""
        polling = self.settings.polling
        self.settings = self._effective_settings()
        self.ds_indexes.forget_s = self.settings.forget_vms
        if self.settings.polling != polling:
            self._rephase_pollers()
        self.receivers.configure(self.collector_targets())
        self.refresh_agent_address()
        self.write_autofile()
        for m in self.modules.values():
            self._guard(m, "reconfigure", m.reconfigure, self.settings)
        self._collect_enrichers()

    def set_discovered(self, discovered: Discovered) -> None:
        """Collectors and settings learned at run time (DNS-SD), applied under the module lock.

        Free, the lock is not needed: applying runs to its end without yielding to the loop.  Held,
        a reload or module start is under way, and a module being started would miss the new settings
        (it is not among ``self.modules`` yet): the apply waits for the lock instead."""
        if discovered == self.discovered:
            return
        self.discovered = discovered
        if not self._modules_lock.locked():
            self.apply_settings()
        elif self._pending_apply is None:
            self._pending_apply = asyncio.get_running_loop().create_task(self._apply_when_unlocked())

    async def _apply_when_unlocked(self) -> None:
        async with self._modules_lock:
            self._pending_apply = None
            if not self._stopping.is_set():
                self.apply_settings()

    async def reload(self) -> bool:
        """SIGHUP: re-read the config; a bad file is reported and the running settings stay."""
        if not self.config_path or self._stopping.is_set():
            return False
        try:
            new = load_config(self.config_path, self.skip_unsupported)
        except ConfigError as e:
            log.error("reload refused, keeping the running settings: %s", e)
            return False
        for warning in new.warnings:
            log.warning("%s", warning)
        async with self._modules_lock:  # a module a reload under way is starting gets these settings too
            if self._stopping.is_set():
                return False
            log.info("reloaded %s", self.config_path)
            self.file_settings = new
            self.apply_settings()
            await self._start_and_stop_modules()
        return True

    # ---------------------------------------------------------------- modules

    def _guard(self, m: module_api.Module, hook: str, fn: Any, *args: Any) -> Any:
        """Call a module hook; a failure is logged and counted, never fatal."""
        try:
            return fn(*args)
        except Exception:
            m.stats[f"{hook}_errors"] += 1
            self.stats["faults"] += 1
            if m.stats[f"{hook}_errors"] == 1:
                log.exception("module %s: %s failed (further failures counted, not logged)", m.name, hook)
            return None

    async def _sync_modules(self) -> None:
        """Start modules the settings now want, stop the ones they no longer want."""
        async with self._modules_lock:
            if not self._stopping.is_set():
                await self._start_and_stop_modules()

    async def _start_and_stop_modules(self) -> None:
        # on a thread: importing a module's package (pyroute2 for eBPF, docker, dbus-next) holds the
        # interpreter for ~130 ms, a stall of the loop's sampling when a reload adds a block
        registry = await asyncio.to_thread(module_api.discover, self.settings)
        for name, cls in registry.items():
            wanted = self._wants(cls)
            running = self.modules.get(name)
            if wanted and running is None:
                m = cls(self.context, self.settings)
                try:
                    await m.start()
                except Exception as e:
                    log.error("module %s could not start: %s", name, e)
                    log.debug("module %s start failure", name, exc_info=True)
                    continue
                self.modules[name] = m
                log.info("module %s started", name)
                self._warn_if_underprivileged(m)
            elif not wanted and running is not None:
                await self._stop_module(running)
        self._collect_enrichers()

    def _collect_enrichers(self) -> None:
        """The flow path runs the enrichers the running modules' settings need (``enrichers.py``)."""
        pairs = [(m, m.name, e) for m in self.modules.values() for e in self._guard(m, "enrichers", m.enrichers) or ()]
        try:
            self.flows.set_enrichers(pairs)
        except EnricherCycle as e:
            log.error("flow samples go without enrichment: %s", e)
            self.flows.set_enrichers(())

    def _wants(self, cls: type[module_api.Module]) -> bool:
        try:
            return cls.wanted(self.settings)
        except Exception:
            log.exception("module %s: wanted() failed", cls.name)
            return False

    async def _stop_module(self, m: module_api.Module) -> None:
        try:
            await m.stop()
        except Exception:
            log.exception("module %s: stop failed", m.name)
        self.modules.pop(m.name, None)

    # ---------------------------------------------------------------- pollers

    def add_poller(self, spec: PollerSpec) -> Poller:
        """Register a data source (replacing one of the same ``ds_class:ds_index``)."""
        p = Poller(spec)
        now = time.monotonic()
        if spec.first_now:
            p.next_due = now
        else:
            p.schedule_first(now, self.settings.polling or 1, self.rng)
        self.pollers[(spec.ds_class, spec.ds_index)] = p
        return p

    def _rephase_pollers(self) -> None:
        """A new polling interval applies now: a poller due later than one interval away gets a fresh first phase."""
        interval = self.settings.polling
        now = time.monotonic()
        for p in self.pollers.values():
            if interval > 0 and p.next_due > now + interval:
                p.schedule_first(now, interval, self.rng)

    def remove_poller(self, ds_class: int, ds_index: int, final: list[rec.Record] | None = None) -> None:
        """Forget a data source, sending ``final`` as its last counter sample first."""
        p = self.pollers.pop((ds_class, ds_index), None)
        if p is not None and final:
            self._send_counters(p, final)

    def _send_counters(self, p: Poller, records: list[rec.Record]) -> None:
        if self.assembler is None:
            return
        sample = CounterSample(p.spec.ds_class, p.spec.ds_index, records, p.next_sequence())
        try:
            encoded = encode_sample(sample)
        except UNENCODABLE as e:
            p.sequence = (p.sequence - 1) & 0xFFFFFFFF  # no gap for collectors to count as a loss
            unencodable(self.stats, f"counter sample of {p.spec.name}", e)
            return
        self.assembler.add(encoded, self.uptime_ms())
        self.stats["counter_samples"] += 1

    def poll(self, p: Poller) -> None:
        try:
            records = p.spec.collect()
        except Exception:
            self.stats["faults"] += 1
            log.exception("poller %s failed", p.spec.name)
            return
        if records:
            self._send_counters(p, records)

    def read_host(self) -> None:
        """The host poller's read, off the loop: the host's own records, whose interface part reads
        some 40 files per interface, containers' veths included (a 200 ms stall with 200
        containers).  ``frozenset`` copies the container ports in one step of the interpreter."""
        self._host_read = self.host.records(adapters_exclude=frozenset(self.container_ifindexes))

    def host_records(self) -> list[rec.Record]:
        """The host sample: the core's records (as read off the loop, or read now), then whatever the
        modules add (2100)."""
        records: list[rec.Record] = [self.host.description(None, self.uuid)]
        own, self._host_read = self._host_read, None
        records += own if own is not None else self.host.records(adapters_exclude=self.container_ifindexes)
        domains: int | None = None
        for m in self.modules.values():
            if module_api.implements(m, "host_counters"):
                self._guard(m, "host_counters", m.host_counters, records)
            if module_api.implements(m, "virtual_domains"):
                count = self._guard(m, "virtual_domains", m.virtual_domains)
                if count is not None:
                    domains = (domains or 0) + count
        if domains is not None:
            records.append(virtual_node(records, domains))
        return records

    def tick(self) -> None:
        """Once a second: fire due pollers (those with a blocking read in a batch off the loop, up
        to the tick's budget), then flush what is pending."""
        now = time.monotonic()
        interval = self.settings.polling
        if interval > 0:
            batch: list[Poller] = []
            for p in list(self.pollers.values()):
                if p.reading or not p.due(now):
                    continue
                if p.spec.read is not None and len(batch) >= READS_PER_TICK:
                    p.postpone(now)
                    continue
                p.advance(now, interval)
                if p.spec.read is None:
                    self.poll(p)
                else:
                    batch.append(p)
            if batch:
                self._read_off_loop(batch)
        self.flush()

    def _read_off_loop(self, batch: list[Poller]) -> None:
        """The batch's reads on a thread started from the loop's (it has the capabilities the
        agent kept, which a pool thread made before the drop would not); each collect follows on
        the loop, for the pollers still registered by then."""
        for p in batch:
            p.reading = True
        done = in_new_thread(_read_all, batch, name="hsflowd-read")
        done.add_done_callback(lambda fut: self._collect_read(batch, fut))

    def _collect_read(self, batch: list[Poller], fut: asyncio.Future[list[bool]]) -> None:
        read_ok = fut.result() if not fut.cancelled() and fut.exception() is None else [False] * len(batch)
        for p, ok in zip(batch, read_ok, strict=True):
            p.reading = False
            if not ok:
                self.stats["faults"] += 1
            elif self.pollers.get((p.spec.ds_class, p.spec.ds_index)) is p:
                self.poll(p)
        self.flush()

    def flush(self) -> None:
        if self.assembler is not None:
            self.assembler.flush(self.uptime_ms())

    # -------------------------------------------------------------------- run

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.stats)
        if self.assembler:
            out["datagrams_sent"] = self.assembler.datagrams_sent
            out["samples_sent"] = self.assembler.samples_sent
        out["collectors"] = {r.label: r.counters() for r in self.receivers.receivers}
        out["modules"] = {name: self._module_status(m) for name, m in self.modules.items()}
        return out

    def _module_status(self, m: module_api.Module) -> dict[str, int]:
        """A module's counters; a failing status hook shows its own failure count instead (the
        status socket, SIGUSR1 and the last log line still answer)."""
        counters = self._guard(m, "status", m.status)
        return counters if counters is not None else dict(m.stats)

    def drop_privileges(self) -> None:
        """Become the configured user, keeping what the running modules declare they need.

        Fails closed: an agent that cannot become its user as asked exits with the reason, rather
        than run on as root with every capability."""
        from .privileges import DropError, Privileges, drop_privileges

        if self.keep_root or os.geteuid() != 0:
            return
        keep = Privileges()
        for m in self.modules.values():
            keep = keep | (self._guard(m, "privileges", m.privileges) or Privileges())
        s = self.settings
        self.autofile.keep_for_later()
        try:
            drop_privileges(s.run_as_user, s.run_as_group, keep)
        except DropError as e:
            instead = "with capabilities it was to give up" if e.became_user else "as root"
            log.error(
                "cannot drop privileges to user %s: %s; exiting rather than running on %s", s.run_as_user, e, instead
            )
            raise SystemExit(f"hsflowd-py: cannot drop privileges to user {s.run_as_user}: {e}") from None
        self.privileges_kept = keep

    def _warn_if_underprivileged(self, m: module_api.Module) -> None:
        """A module started by a reload after the drop gets only what the agent kept: say what is missing."""
        kept = self.privileges_kept
        if kept is None:
            return
        wanted = self._guard(m, "privileges", m.privileges)
        missing = wanted.capabilities - kept.capabilities if wanted else set()
        if missing:
            log.warning(
                "module %s started after the agent gave up root and lacks %s: restart the agent to grant them",
                m.name,
                ", ".join(sorted(missing)),
            )

    def _reload_in_background(self) -> None:
        """SIGHUP: the reload runs as a task the agent keeps until it ends (the loop holds tasks weakly)."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _serve_status(self) -> asyncio.AbstractServer | None:
        """The ``--status`` socket; the agent runs on without it if it cannot be made."""
        if not self.status_path:
            return None
        try:
            return await status.serve(self.status_path, self.status)
        except OSError as e:
            log.error("no status socket at %s: %s", self.status_path, e)
            return None

    def _lock_instance(self) -> InstanceLock | None:
        """One agent per status socket (and pid file): the lock beside them is taken first, while
        root, and held until they are gone; a second agent exits with the reason and touches neither."""
        anchor = self.status_path or self.pid_path
        if not anchor:
            return None
        try:
            return InstanceLock(f"{anchor}.lock")
        except AlreadyRunning as e:
            log.error("%s: not starting, the running agent keeps its status socket and pid file", e)
            raise SystemExit(f"hsflowd-py: {e}: not starting") from None
        except OSError as e:
            log.error("cannot take the lock %s.lock: %s", anchor, e)
            raise SystemExit(f"hsflowd-py: cannot take the lock {anchor}.lock: {e}") from None

    def _write_pid_file(self) -> PidFile | None:
        """``-p``, written before anything else while the agent is root; an agent that cannot
        write it exits with the reason."""
        if not self.pid_path:
            return None
        try:
            return PidFile(self.pid_path)
        except OSError as e:
            log.error("cannot write the pid file %s: %s", self.pid_path, e)
            raise SystemExit(f"hsflowd-py: cannot write the pid file {self.pid_path}: {e}") from None

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then flush and stop cleanly."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)
        loop.add_signal_handler(signal.SIGUSR1, lambda: log.warning("status: %s", self.status()))
        refused = request_slice()  # this thread runs the loop (sched_slice.py)
        if refused is not None:
            log.debug("the loop keeps the scheduler's default slice: %s", refused)
        instance = self._lock_instance()
        try:
            await self._run_locked()
        finally:
            if instance is not None:
                instance.release()

    async def _run_locked(self) -> None:
        pid_file = self._write_pid_file()
        self.apply_settings()
        self.add_poller(PollerSpec(*HOST_DS, self.host_records, "host", read=self.read_host))
        status_server = None
        try:
            await self._sync_modules()
            status_server = await self._serve_status()
            self.drop_privileges()
            log.info(
                "agent %s sub-agent %d sending to %s",
                self.agent_address,
                self.settings.sub_agent(),
                ", ".join(r.label for r in self.receivers.receivers) or "nobody yet",
            )
            last_address_check = time.monotonic()
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
                self.tick()
                if time.monotonic() - last_address_check >= self.settings.check_adaptors:
                    last_address_check = time.monotonic()
                    self.receivers.refresh()
                    self.refresh_agent_address(await asyncio.to_thread(self._local_addresses))
                    self.write_autofile()
        finally:
            self._stopping.set()  # a SIGHUP from now on changes nothing (its default action would kill us)
            async with self._modules_lock:  # a reload under way finishes its module starts first
                for m in list(self.modules.values()):
                    await self._stop_module(m)
            await self.flows.drain()
            self.flush()
            self.receivers.close()
            if status_server is not None:
                status_server.close()
            self.autofile.close()
            if pid_file is not None:
                pid_file.remove()
            log.info("stopped: %s", self.status())


def _read_all(batch: list[Poller]) -> list[bool]:
    """Each poller's read (on the batch's thread); False where one failed (logged)."""
    ok = []
    for p in batch:
        try:
            assert p.spec.read is not None
            p.spec.read()
            ok.append(True)
        except Exception:
            log.exception("poller %s: reading failed", p.spec.name)
            ok.append(False)
    return ok
