"""docker { }: the Docker engine's containers as data sources 3:dsIndex, and markTraffic.

Following the engine
    Containers come and go in seconds, so the module follows the engine's event stream rather
    than polling it.  On each connection it subscribes to events first, then lists the running
    containers, then applies the events queued meanwhile: a container that starts or stops
    between the two is neither missed nor left behind.  Each new container is inspected once
    (pid, names, limits) and its cgroup and network namespace located; from then on its counters
    come from the kernel (``counters.py``), not from a stats call per container per interval.
    The engine going away (restart, socket removed) is logged once; the module reconnects with
    backoff (1 s doubling to 30 s) and resynchronises: containers no longer running get their
    final sample, new ones are added, and known ones are inspected again (a restart gives them
    new pids) while keeping their poller, totals and dsIndex.

Per container
    A counter sample on 3:dsIndex (index from the first 16 bytes of the container id, so a
    container keeps it across agent and engine restarts) with 2000 (hostname: the container's
    name, or its configured hostname with ``hostname = on``; unique), 2001 (its interfaces),
    2002 (parent 2:1), 2101 (state, CPU ms, vCPUs), 2102 (memory and limit; no limit: the
    host's RAM), 2103 (block I/O), and 2104 (network I/O, left out for a container that shares
    the host's network namespace).  The first sample goes out on the next tick after the start
    event; when the container stops, a final sample with the last values read (the established
    agent sends zeroed counters there), then it is forgotten and its dsIndex released.
    Kubernetes pause containers are skipped; a Kubernetes container is named
    ``namespace/pod/container`` from its labels.  The tracked containers count towards the host
    sample's one 0:2100, which the core builds from every module's ``virtual_domains()``.

markTraffic
    With ``markTraffic = on`` the module returns an enricher (``marking.py``) that names the
    containers on both sides of a sampled packet in 0:2210 and gives the tcp module the network
    namespace to look the socket up in (``packet.netns``); without it, none.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import time
from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass
from typing import Any

from hsflowd_py.cgroup_counters import CountedDisks, GuestCounters, KernelSource
from hsflowd_py.config import Settings
from hsflowd_py.enrichers import Enricher
from hsflowd_py.module import Module, register
from hsflowd_py.module_context import ModuleContext
from hsflowd_py.netns import in_new_thread
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.privileges import Privileges
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.cpuinfo import read_cpuinfo
from hsflowd_py.readers.meminfo import read_meminfo
from hsflowd_py.sflow.records import (
    HostAdapter,
    HostAdapters,
    HostDescription,
    HostParent,
    Record,
)
from hsflowd_py.tasks import cancel, owned_by_thread
from hsflowd_py.traffic_map import Owner, OwnerMarking, TrafficMap, interface_keys

from .counters import parse_stats
from .engine import Engine, EngineUnavailable, EventFeed, Gone, Malformed, Refused, valid_id
from .inspect import ContainerInfo, parse_inspect
from .names import UniqueNames
from .probe import Probe, Prober
from .settings import DockerSettings

log = logging.getLogger("hsflowd.docker")

DS_CLASS = 3
STATE_RUNNING, STATE_PAUSED, STATE_SHUTDOWN = 1, 3, 4
"""2101 states (libvirt's): an exited container is "shutdown", as the established agent reports."""
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 30.0
MAX_LOGGED_KINDS = 100


@dataclass
class Tracked(GuestCounters):
    """A container followed; its counters are read off the loop (``_read_counters``, on the core's
    reading thread), taken on it (``_take``), guarded as ``GuestCounters`` says."""

    info: ContainerInfo
    ds_index: int
    probe: Probe
    paused: bool
    stats_pending: bool = False

    def counter_source(self) -> KernelSource | None:
        return self.probe.source


@register
class DockerModule(Module):
    name = "docker"
    settings_type = DockerSettings

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.containers: dict[str, Tracked] = {}
        self.names = UniqueNames()
        self.hostnames = UniqueNames()
        self.traffic = TrafficMap()
        self.engine: Engine | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        """The move to a new engine socket after a reload, kept so that stop() and the next move cancel it."""
        self._stopped = False
        """Set by stop(): a reconnection still under way must not start following the engine again."""
        self._stats_tasks: set[asyncio.Task[None]] = set()
        self._logged: set[str] = set()
        self._down_since: float | None = None
        self.prober = Prober(context.root)
        self.disks = CountedDisks(context.root)
        self._host_cpus = 1
        self._host_memory = 0
        self._description = HostDescription()
        """The host's 2000, whose machine type and OS release containers share (read once)."""

    @property
    def socket_path(self) -> str:
        return self.settings.docker.socket if self.settings.docker else "/var/run/docker.sock"

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        root = self.context.root
        try:
            self._host_cpus = read_cpuinfo(root).count or 1
            self._host_memory = read_meminfo(root).get("MemTotal", 0)
        except ReaderError as err:
            log.warning("docker: host CPU count or memory unknown (%s)", err)
        self._description = self.context.describe(None, self.context.host_uuid)
        self._follow_engine()

    def _follow_engine(self) -> None:
        self.engine = Engine(self.socket_path)
        self._task = asyncio.create_task(self._follow(self.engine), name="docker-follow")

    async def _unfollow_engine(self) -> None:
        await cancel(self._task)
        self._task = None
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    async def stop(self) -> None:
        self._stopped = True
        await cancel(self._reconnecting)
        self._reconnecting = None
        await self._unfollow_engine()
        await cancel(*self._stats_tasks)
        for cid in list(self.containers):
            self._forget(cid, final=False)

    def reconfigure(self, settings: Settings) -> None:
        old = self.socket_path
        super().reconfigure(settings)
        if settings.docker is None:
            return  # the block was removed: the core stops this module next, there is nothing to follow
        if self.socket_path != old and self._task is not None:
            log.info("docker: engine socket changed from %s to %s", old, self.socket_path)
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(self._reconnecting), name="docker-reconnect"
            )

    async def _reconnect(self, previous: asyncio.Task[None] | None) -> None:
        """Follow the engine at the new socket; ``previous`` (a move still under way) is cancelled
        first, so that two quick changes leave one follower, on the last socket."""
        await cancel(previous)
        await self._unfollow_engine()
        if self._stopped:
            return  # stop() forgets the containers
        for cid in list(self.containers):
            self._forget(cid, final=True)
        self._follow_engine()

    def status(self) -> dict[str, int]:
        return {**self.stats, "containers": len(self.containers)}

    def privileges(self) -> Privileges:
        """The engine socket's group (it is ``root:docker`` 0660); CAP_SYS_ADMIN to enter a
        container's network namespace; CAP_SYS_PTRACE to open another user's /proc/<pid>/ns/net
        and /proc/<pid>/io, and CAP_DAC_READ_SEARCH for the latter's mode 0400.  Cgroup files and
        /proc/<pid>/net/dev are world-readable."""
        groups = set()
        try:
            groups.add(os.stat(self.socket_path).st_gid)
        except OSError:
            with contextlib.suppress(KeyError):
                groups.add(grp.getgrnam("docker").gr_gid)
        return Privileges({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}, groups)

    # ------------------------------------------------------------ following the engine

    def _once(self, stat: str, level: int, message: str, *args: Any, detail: str = "") -> None:
        """Count a fault under ``stat``; log it the first time its kind (``stat`` and ``detail``) occurs."""
        self.stats[stat] += 1
        key = f"{stat}:{detail}"
        if key not in self._logged and len(self._logged) < MAX_LOGGED_KINDS:
            self._logged.add(key)
            log.log(level, message + " (further ones counted, not logged)", *args)

    async def _follow(self, engine: Engine) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            try:
                feed = await engine.subscribe()
                backoff = BACKOFF_FIRST_S
                if self._down_since is not None:
                    log.info(
                        "docker: engine at %s is back after %.0f s; resynchronising",
                        engine.socket_path,
                        time.monotonic() - self._down_since,
                    )
                    self._down_since = None
                else:
                    log.info("docker: following the engine at %s", engine.socket_path)
                await self._session(feed)
            except Exception as err:
                if not isinstance(err, EngineUnavailable):
                    self._once("internal_errors", logging.ERROR, "docker: unexpected failure, reconnecting: %r", err)
                    log.debug("docker: failure", exc_info=True)
                self.stats["engine_unavailable"] += 1
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "docker: engine at %s unavailable (%s); retrying every %.0f-%.0f s",
                        engine.socket_path,
                        err,
                        BACKOFF_FIRST_S,
                        BACKOFF_MAX_S,
                    )
                else:
                    log.debug("docker: engine still unavailable: %s", err)
            engine.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session(self, feed: EventFeed) -> None:
        await self._resync()
        while True:
            events = await feed.take()
            if feed.overflowed:
                feed.overflowed = False
                feed.discard()
                self.stats["events_dropped"] = feed.dropped
                log.warning("docker: event queue full, %d events dropped so far; resynchronising", feed.dropped)
                await self._resync()
                continue
            if not events and feed.ended:
                raise EngineUnavailable(feed.end_reason)
            for event in events:
                await self._apply(event)

    async def _resync(self) -> None:
        """Make the tracked set the engine's running set (at connection, and after lost events)."""
        assert self.engine is not None
        try:
            running = await self.engine.list_running()
        except (Malformed, Refused) as err:
            raise EngineUnavailable(f"cannot list containers: {err}") from None
        self.stats["resyncs"] += 1
        listed = set(running)
        gone = [cid for cid in self.containers if cid not in listed]
        for cid in gone:
            self._forget(cid, final=True)
        known = [cid for cid in running if cid in self.containers]
        for cid in running:
            await (self._refresh(cid) if cid in self.containers else self._add(cid, first_now=False))
        log.info(
            "docker: %d containers tracked (%d kept, %d stopped meanwhile)", len(self.containers), len(known), len(gone)
        )

    async def _apply(self, event: Any) -> None:
        self.stats["events"] += 1
        if isinstance(event, Malformed):
            self._once("malformed_events", logging.WARNING, "docker: %s; skipped", event, detail="json")
            return
        kind, action, cid, attributes = _event_fields(event)
        if kind is None:
            self._once("malformed_events", logging.WARNING, "docker: malformed event %.200s; skipped", event)
            return
        if kind == "network":
            cid = attributes.get("container")
            if action in ("connect", "disconnect") and cid in self.containers:
                await self._reprobe(self.containers[cid])
            return
        if kind != "container":
            return
        if action == "start" and cid not in self.containers:
            await self._add(cid)
        elif action in ("die", "destroy"):
            self._forget(cid, final=True)
        elif action in ("pause", "unpause") and cid in self.containers:
            self.containers[cid].paused = action == "pause"
        elif action == "rename" and cid in self.containers:
            await self._refresh(cid)

    # ------------------------------------------------------------ containers

    async def _inspect(self, cid: str) -> ContainerInfo | None:
        """The container's inspect reply; None if refused or malformed (logged, skipped); raises
        Gone if the container no longer exists."""
        assert self.engine is not None
        self.stats["inspects"] += 1
        try:
            return parse_inspect(await self.engine.inspect(cid))
        except Refused as err:
            self._once("inspect_refused", logging.WARNING, "docker: inspect of %s refused: %s; skipped", cid[:12], err)
        except Malformed as err:
            self._once(
                "malformed_replies",
                logging.WARNING,
                "docker: container %s: %s; skipped",
                cid[:12],
                err,
                detail=str(err),
            )
        return None

    def _wanted(self, info: ContainerInfo) -> bool:
        if info.pod_sandbox:
            self.stats["pod_sandboxes_skipped"] += 1
            return False
        return info.running and info.pid > 0

    async def _add(self, cid: str, first_now: bool = True) -> None:
        """Follow a container; its first sample on the next tick (a start event), or at a random
        phase (the containers listed at a connection, so that hundreds do not poll in step)."""
        try:
            info = await self._inspect(cid)
        except Gone:
            return
        if info is None or not self._wanted(info):
            return
        probe = await owned_by_thread(self.prober.probe, info, release=Probe.close, name="docker-probe")
        if probe.pid_missing and not await self._still_running(info):
            return  # it exited between the inspect and the probe: too short-lived to measure
        if cid in self.containers:  # added meanwhile (a resync raced an event)
            probe.close()
            return
        t = Tracked(info, self.context.allocate_ds_index(info.uuid), probe, info.paused)
        self.containers[cid] = t
        self.names.claim(cid, info.display_name)
        self.hostnames.claim(cid, info.hostname or info.display_name)
        self._claim_interfaces(t)
        self._report_probe(t)
        # the values a final sample carries if the container stops before the first poll
        await in_new_thread(self._read_counters, t, name="docker-read")
        if self.containers.get(cid) is not t:
            return  # forgotten meanwhile (stop)
        self._take(t)
        self.context.add_poller(
            PollerSpec(
                DS_CLASS,
                t.ds_index,
                lambda: self._collect(t),
                f"docker {info.name}",
                first_now=first_now,
                read=lambda: self._read_counters(t),
            )
        )
        self.stats["added"] += 1
        log.debug("docker: tracking %s (%s) as 3:%d", info.name, cid[:12], t.ds_index)

    async def _still_running(self, info: ContainerInfo) -> bool:
        """Whether a container whose pid we cannot see still runs under that pid (then the pid is
        in another pid namespace than ours, and its counters must come from the engine)."""
        try:
            again = await self._inspect(info.id)
        except Gone:
            return False
        return again is not None and again.running and again.pid == info.pid

    async def _refresh(self, cid: str) -> None:
        """Inspect a known container again (after a reconnection or a rename)."""
        try:
            info = await self._inspect(cid)
        except Gone:
            info = None
            self._forget(cid, final=True)
        t = self.containers.get(cid)
        if t is None or info is None:
            return
        if not self._wanted(info):
            self._forget(cid, final=True)
            return
        old_pid, t.info, t.paused = t.info.pid, info, info.paused
        self.names.claim(cid, info.display_name)
        self.hostnames.claim(cid, info.hostname or info.display_name)
        if info.pid != old_pid:
            await self._reprobe(t)

    async def _reprobe(self, t: Tracked) -> None:
        probe = await owned_by_thread(self.prober.probe, t.info, release=Probe.close, name="docker-probe")
        if self.containers.get(t.info.id) is not t:
            probe.close()
            return
        self._unclaim_interfaces(t)
        with t.lock:
            t.probe.close()
            t.probe = probe
        self._claim_interfaces(t)
        self._report_probe(t)

    def _forget(self, cid: str, *, final: bool) -> None:
        t = self.containers.pop(cid, None)
        if t is None:
            return
        records = self._records(t, STATE_SHUTDOWN) if final and t.totals.readings else None
        self.context.remove_poller(DS_CLASS, t.ds_index, final=records)
        self.context.release_ds_index(t.info.uuid)
        self.names.release(cid)
        self.hostnames.release(cid)
        self._unclaim_interfaces(t)
        t.close()
        self.stats["forgotten"] += 1
        log.debug("docker: %s (%s) stopped; 3:%d released", t.info.name, cid[:12], t.ds_index)

    # ------------------------------------------------------------ host side

    def _report_probe(self, t: Tracked) -> None:
        p, name = t.probe, t.info.name
        if p.source is None:
            self._once(
                "stats_fallback",
                logging.INFO,
                "docker: %s: counters from the engine's stats (%s)",
                name,
                p.source_error,
            )
        if p.interface_error:
            self._once("netns_errors", logging.WARNING, "docker: %s: interfaces unknown (%s)", name, p.interface_error)

    def _claim_interfaces(self, t: Tracked) -> None:
        self.traffic.claim(t.info.id, Owner(t.ds_index, t.probe.netns), interface_keys(t.probe.interfaces))
        self.context.claim_container_ports(i.host_ifindex for i in t.probe.interfaces if i.host_ifindex)

    def _unclaim_interfaces(self, t: Tracked) -> None:
        self.traffic.release(t.info.id)
        self.context.release_container_ports(i.host_ifindex for i in t.probe.interfaces if i.host_ifindex)

    # ------------------------------------------------------------ counters

    def _read_counters(self, t: Tracked) -> None:
        t.read(self.disks)

    def _take(self, t: Tracked) -> None:
        """On the loop: the reading made off it into the totals; without a kernel source, ask the
        engine's stats (answered later)."""
        if t.probe.source is None:
            if not t.stats_pending:
                t.stats_pending = True
                task = asyncio.ensure_future(self._fetch_stats(t))
                self._stats_tasks.add(task)
                task.add_done_callback(self._stats_tasks.discard)
            return
        t.take(log, f"docker: {t.info.name}")

    async def _fetch_stats(self, t: Tracked) -> None:
        assert self.engine is not None
        try:
            t.totals.add(parse_stats(await self.engine.stats(t.info.id)))
            self.stats["stats_calls"] += 1
        except (Gone, EngineUnavailable):
            pass
        except (Refused, Malformed) as err:
            self._once(
                "malformed_replies",
                logging.WARNING,
                "docker: stats of %s: %s; skipped",
                t.info.name,
                err,
                detail=str(err),
            )
        finally:
            t.stats_pending = False

    def _collect(self, t: Tracked) -> list[Record] | None:
        self._take(t)
        if not t.totals.readings:
            return None  # stats fallback: nothing yet
        return self._records(t, STATE_PAUSED if t.paused else STATE_RUNNING)

    def _records(self, t: Tracked, state: int) -> list[Record]:
        cid, info = t.info.id, t.info
        docker = self.settings.docker
        name = self.hostnames.name(cid) if docker and docker.hostname else self.names.name(cid)
        adapters = [HostAdapter(if_index=i.ifindex, macs=[i.mac]) for i in t.probe.interfaces if i.mac]
        return [
            replace(self._description, hostname=name, uuid=info.uuid),
            HostParent(ds_class=2, ds_index=1),
            HostAdapters(adapters=adapters),
            *t.totals.records(state, info.vcpus(self._host_cpus), info.memory_limit or self._host_memory),
        ]

    def virtual_domains(self) -> int:
        """The host sample's 0:2100 counts the containers tracked (the core builds the record)."""
        return len(self.containers)

    # ------------------------------------------------------------ markTraffic

    def enrichers(self) -> Sequence[Enricher]:
        """Marking only with ``markTraffic = on``: without it, samples take the allocation-free path."""
        docker = self.settings.docker
        return [OwnerMarking(self.traffic)] if docker is not None and docker.mark_traffic else []


def _event_fields(event: Any) -> tuple[str | None, str, str, dict[str, str]]:
    """(Type, Action, Actor.ID, Actor.Attributes) of an event; Type None if it is malformed.

    Actions may carry details after a colon (``exec_start: sh -c …``, ``health_status: healthy``).
    """
    if not isinstance(event, dict):
        return None, "", "", {}
    kind, action, actor = event.get("Type"), event.get("Action"), event.get("Actor")
    if not isinstance(kind, str) or not isinstance(action, str) or not isinstance(actor, dict):
        return None, "", "", {}
    cid, attributes = actor.get("ID"), actor.get("Attributes") or {}
    if not isinstance(attributes, dict) or (kind == "container" and not valid_id(cid)):
        return None, "", "", {}
    return kind, action.split(":", 1)[0], cid if isinstance(cid, str) else "", attributes


def replace(record: Record, **fields: Any) -> Any:
    """A copy of a record with some fields changed."""
    out = copy(record)
    for name, value in fields.items():
        setattr(out, name, value)
    return out
