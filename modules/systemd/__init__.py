"""systemd { }: each running service as its own data source, and traffic marked by service.

The module keeps, over the system D-Bus, the set of loaded and active (or
reloading) ``*.service`` units and their control groups, re-read every
``refreshVMs`` seconds (``systemd { refreshVMs }`` or the global one) and
soon after systemd signals a change (bus.py).  Each service gets a counter
poller on 3:dsIndex (service.py); a service that stops gets a final sample
with the last values read and is forgotten, its dsIndex released.

If the bus is unavailable, closes or systemd does not answer, that is
logged once, the connection is retried with exponential backoff, and the
services already known keep being polled from their cgroups meanwhile;
when the bus answers again the set is re-read.  Malformed answers are
logged (once per distinct problem) and the entries skipped.

The host sample's 0:2100 counts tracked services in ``num_domains``
(``virtual_domains``; the core adds the docker module's containers to the same
record).

``markTraffic = on`` adds an enricher (traffic.py) that marks sampled
packets with the service that owns their local socket; without it the module
has none, and the core keeps its allocation-free path for samples that nobody
enriches.  A reload that turns markTraffic on or off adds or removes just the
enricher.

Privileges: ``dropPriv = off`` keeps CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH
after the agent stops being root, to read other users' ``/proc/<pid>/io``
where a cgroup has no I/O accounting (the established agent keeps root for
this); otherwise those figures stay at their last value and are logged once.
``markTraffic = on`` keeps them too, to read the services' ``/proc/<pid>/fd``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hsflowd_py.config import Settings
from hsflowd_py.enrichers import Enricher
from hsflowd_py.module import Module, register
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.privileges import Privileges
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.cgroup import CgroupMount, read_mounts
from hsflowd_py.readers.meminfo import read_meminfo
from hsflowd_py.tasks import cancel

from .bus import BusFailure, CallError, SystemdBus
from .owners import Owners
from .service import Service, service_uuid
from .settings import SystemdSettings
from .traffic import PROCESS_READING, ServiceMarking
from .units import Malformed, Unit

if TYPE_CHECKING:
    from hsflowd_py.module_context import ModuleContext

log = logging.getLogger("hsflowd.systemd")

DS_CLASS = 3
DEBOUNCE_S = 0.2
"""Signals come in bursts (a start emits UnitNew, several PropertiesChanged, JobRemoved): one refresh per burst."""
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0


@register
class SystemdModule(Module):
    name = "systemd"
    settings_type = SystemdSettings

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.root: Path = context.root
        self.services: dict[str, Service] = {}
        self.owners = Owners(self.root)
        self.mounts: list[CgroupMount] = []
        self.mem_total = 0
        self.changed = asyncio.Event()
        self.listed_once = False
        self.task: asyncio.Task[None] | None = None
        self.bus: SystemdBus | None = None
        self._logged: set[str] = set()
        self.read_faults: set[tuple[str, str]] = set()
        self._apply(settings)

    def _apply(self, settings: Settings) -> None:
        s = settings.systemd
        self.drop_priv = bool(s.drop_priv) if s else True
        self.mark_traffic = bool(s and s.mark_traffic)
        self.refresh_s = float((s.refresh_vms if s else None) or settings.refresh_vms)
        self.cgroup_root = Path(s.cgroup_root if s else "/sys/fs/cgroup")

    def reconfigure(self, settings: Settings) -> None:
        super().reconfigure(settings)
        self._apply(settings)
        self.changed.set()

    async def start(self) -> None:
        """The first connection is made here, while the agent may still be root: a connection begun
        before the privilege drop and authenticated after it would be refused (the bus checks the
        peer credentials of the socket against the uid the client claims)."""
        try:
            self.bus = await SystemdBus.connect(self.changed.set)
        except Exception:  # the loop retries and logs
            log.debug("systemd: first D-Bus connection failed", exc_info=True)
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel(self.task)
        if self.bus is not None:  # cancelled before the task ever ran
            await self.bus.close()
            self.bus = None
        for svc in list(self.services.values()):
            self.context.remove_poller(DS_CLASS, svc.ds_index)
            self.context.release_ds_index(svc.uuid.bytes)
        self.services.clear()

    def privileges(self) -> Privileges:
        return Privileges(set(PROCESS_READING)) if self.mark_traffic or not self.drop_priv else Privileges()

    def enrichers(self) -> Sequence[Enricher]:
        return [ServiceMarking(self.owners)] if self.mark_traffic else []

    # ------------------------------------------------------------ the bus

    async def _run(self) -> None:
        """Connect, list, follow changes; on any failure drop the connection and retry with backoff."""
        backoff = RETRY_FIRST_S
        failures = 0
        while True:
            try:
                if self.bus is None:
                    self.bus = await SystemdBus.connect(self.changed.set)
                await self._refresh()
                if failures:
                    log.info("systemd: D-Bus answers again after %d failed attempt(s)", failures)
                failures, backoff = 0, RETRY_FIRST_S
                await self._follow()
                raise BusFailure("the connection to the system bus closed")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # dbus-next raises OSError, EOFError, AuthError or plain Exception
                failures += 1
                self.stats["dbus_failures"] += 1
                if failures == 1:
                    log.warning(
                        "systemd: D-Bus unavailable (%s: %s); retrying with backoff, known services stay polled",
                        type(e).__name__,
                        e,
                    )
                log.debug("systemd: D-Bus failure %d", failures, exc_info=True)
            finally:
                if self.bus is not None:
                    await self.bus.close()
                    self.bus = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX_S)

    async def _follow(self) -> None:
        """Refresh every refresh_s and after each burst of change signals; returns when the bus closes."""
        assert self.bus is not None
        closed = asyncio.ensure_future(self.bus.closed())
        try:
            while True:
                changed = asyncio.ensure_future(self.changed.wait())
                done, _ = await asyncio.wait(
                    {closed, changed}, timeout=self.refresh_s, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
                if closed.done():
                    return
                if self.changed.is_set():
                    await asyncio.sleep(DEBOUNCE_S)
                self.changed.clear()
                await self._refresh()
        finally:
            closed.cancel()

    async def _refresh(self) -> None:
        """Re-read the running services and their cgroups; start and stop data sources to match."""
        assert self.bus is not None
        self.stats["refreshes"] += 1
        try:
            units, problems = await self.bus.list_units()
        except Malformed as e:
            self._once(f"systemd: skipping a malformed answer: {e}")
            return
        for problem in problems:
            self._once(f"systemd: skipping a malformed unit: {problem}")
        running = {u.name: u for u in units if u.running_service}
        self._read_host()
        cgroups = await asyncio.gather(*(self._control_group(u) for u in running.values()))
        for name in [n for n in self.services if n not in running]:
            self._forget(name)
        for unit, cgroup in zip(running.values(), cgroups, strict=True):
            svc = self.services.get(unit.name)
            if cgroup is None:  # no usable answer for this unit: keep what we knew, or wait for the next refresh
                continue
            if svc is None:
                self._track(unit.name, cgroup)
            else:
                svc.place(self.mounts, cgroup)
        self.owners.set_services(self.services.values())
        self.listed_once = True

    async def _control_group(self, unit: Unit) -> str | None:
        assert self.bus is not None
        try:
            return await self.bus.control_group(unit)
        except (CallError, Malformed) as e:  # the unit's own problem (gone meanwhile, a bad answer)
            self._once(f"systemd: skipping {unit.name}: {e}")
            return None

    def _read_host(self) -> None:
        """The cgroup mounts and the host's memory size, re-read at each refresh (both can change)."""
        try:
            mounts = read_mounts(self.root)
            base = self.root / str(self.cgroup_root).lstrip("/")
            preferred = [m for m in mounts if m.mount_point == base or base in m.mount_point.parents]
            self.mounts = preferred or mounts
            if not self.mounts:
                self._once("systemd: no cgroup filesystem is mounted; service counters come from /proc only")
        except ReaderError as e:
            self._once(f"systemd: cannot read the cgroup mounts: {e}")
        try:
            self.mem_total = read_meminfo(self.root).get("MemTotal", self.mem_total)
        except ReaderError as e:
            self._once(f"systemd: cannot read the memory size: {e}")

    # ------------------------------------------------------- data sources

    def _track(self, name: str, cgroup: str) -> None:
        svc_uuid = service_uuid(self.context.host_uuid, name)
        svc = Service(
            name=name,
            uuid=svc_uuid,
            ds_index=self.context.allocate_ds_index(svc_uuid.bytes),
            root=self.root,
            describe=self.context.describe,
            host_memory=lambda: self.mem_total,
            logged=self.read_faults,
        )
        svc.place(self.mounts, cgroup)
        self.services[name] = svc
        self.context.add_poller(PollerSpec(DS_CLASS, svc.ds_index, svc.records, f"systemd {name}", self.listed_once))
        log.debug("systemd: tracking %s as 3:%d (cgroup %r)", name, svc.ds_index, cgroup)

    def _forget(self, name: str) -> None:
        svc = self.services.pop(name)
        self.context.remove_poller(DS_CLASS, svc.ds_index, final=svc.final_records())
        self.context.release_ds_index(svc.uuid.bytes)
        log.debug("systemd: %s stopped; final sample sent for 3:%d", name, svc.ds_index)

    def virtual_domains(self) -> int:
        """The host sample's 0:2100 counts the services tracked (the core builds the record)."""
        return len(self.services)

    # ------------------------------------------------------------ status

    def _once(self, message: str) -> None:
        self.stats["malformed_or_failed"] += 1
        if message not in self._logged:
            self._logged.add(message)
            log.warning("%s", message)

    def status(self) -> dict[str, int]:
        marking = self.owners.stats if self.mark_traffic else {}
        return {**self.stats, **marking, "services": len(self.services), "bus_up": int(self.bus is not None)}
