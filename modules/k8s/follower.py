"""What ``k8s { }`` and ``containerd { }`` share: following a runtime over gRPC by listing it, and
reporting each pod or container it runs as a 3:N data source from the kernel's files.

Following the runtime
    containerd 1.6 has no CRI event stream (GetContainerEvents came with 1.7), so the runtime is
    listed every half second: a listing of 200 pods costs ~2 ms (only ids are read), a pod that
    lives one second is seen, and a runtime that restarts changes nothing (guests are keyed by
    runtime id, so none is lost or counted twice; while the runtime is away the known ones are
    still polled from the kernel).  A new guest is looked up once (its pid, names) and probed on a
    thread (``pod.py``: cgroup, network namespace, interfaces).  A runtime that is absent, slow (5 s
    deadline per call) or answers garbage is logged once and retried with backoff (1 s doubling to
    30 s); one line says when it is back.

Per guest
    3:dsIndex (from the guest's UUID, kept across agent and runtime restarts; released after the
    global ``forgetVMs``) with 2000 (its hostname and UUID), 2001 (its interfaces), 2002 (parent
    2:1), 2101 CPU, 2102 memory (no limit: the host's RAM), 2103 block I/O, 2104 network I/O (left
    out when it shares the host's namespace).  The first sample goes out on the next tick; one
    that stops gets a final sample with the last values read.  The host sample's 0:2100 counts the
    guests (``virtual_domains()``).  ``markTraffic = on``: ``marking.py``.

Host ports (pods only, ``K8sModule``)
    The host end of each pod veth (``netns_links.py``: the peer ifindex of the pod's interface,
    confirmed on the host) is asked for packet sampling (served by ``pcap { dynamic = on }``
    blocks) and, with ``setIfAlias`` and ``setIfName``, named after the pod in its 0:1005; both
    are given back when the pod goes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hsflowd_py.cgroup_counters import CountedDisks, GuestCounters, KernelSource
from hsflowd_py.config import Settings
from hsflowd_py.enrichers import Enricher
from hsflowd_py.module import Module
from hsflowd_py.module_context import ModuleContext
from hsflowd_py.netns import in_new_thread
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.privileges import Privileges
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.cpuinfo import read_cpuinfo
from hsflowd_py.readers.meminfo import read_meminfo
from hsflowd_py.sflow.records import HostAdapter, HostAdapters, HostDescription, HostParent, Record
from hsflowd_py.traffic_map import Owner, OwnerMarking, TrafficMap, interface_keys

from .channel import Channel, Malformed, rpc_error
from .marking import SocketCgroups, SocketMarking
from .pod import PodProbe, PodProber

log = logging.getLogger("hsflowd.k8s")

DS_CLASS = 3
STATE_RUNNING, STATE_SHUTDOWN = 1, 4
LIST_EVERY_S = 0.5
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 30.0


class Unavailable(Exception):
    """The runtime cannot be listed now (no socket, refused, deadline, garbage)."""


@dataclass(frozen=True)
class Found:
    """What the runtime says of a new guest."""

    hostname: str
    uuid: bytes
    pid: int
    """In the runtime's pid namespace: the pod sandbox's (pause) process, or the container's init."""
    cgroup_owner: str
    """The id its cgroup path names: a pod's UID (the pod cgroup is the pid's cgroup's parent) or a
    container's id (its own cgroup)."""
    pod: bool


@dataclass
class Guest(GuestCounters):
    """A pod or container followed; its counters read off the loop, as ``GuestCounters`` says."""

    key: str
    found: Found
    ds_index: int
    probe: PodProbe
    description: HostDescription

    def counter_source(self) -> KernelSource | None:
        return self.probe.source


class Follower(Module):
    """A module that follows one runtime; subclasses say where it is, how to list it and what a new
    guest is."""

    kind: ClassVar[str]
    """What a guest is, for logs and status: ``pods``, ``containers``."""

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.guests: dict[str, Guest] = {}
        self.traffic = TrafficMap()
        self.socket_cgroups = SocketCgroups()
        self.prober = PodProber(context.root)
        self.channel: Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._adding: set[str] = set()
        self.disks = CountedDisks(context.root)
        self._host_cpus = 1
        self._host_memory = 0

    # ------------------------------------------------------------ what subclasses say

    def socket_path(self) -> str | None:
        raise NotImplementedError

    def mark_traffic(self) -> bool:
        raise NotImplementedError

    def samples_host_ports(self) -> bool:
        """Whether a guest's host veths are asked for packet sampling (``pcap { dynamic = on }``)."""
        return False

    def port_name(self, found: Found) -> str | None:
        """The 0:1005 name of a guest's host veths; None leaves the kernel's."""
        return None

    async def list_guests(self, channel: Channel) -> dict[str, Any]:
        """Running guests by key (the value is handed to :meth:`find` for a new one)."""
        raise NotImplementedError

    async def find(self, channel: Channel, key: str, listed: Any) -> Found | None:
        """A new guest's names and pid; None to skip it (logged by the subclass)."""
        raise NotImplementedError

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        root = self.context.root
        try:
            self._host_cpus = read_cpuinfo(root).count or 1
            self._host_memory = read_meminfo(root).get("MemTotal", 0)
        except ReaderError as err:
            log.warning("%s: host CPU count or memory unknown (%s)", self.name, err)
        self._task = asyncio.create_task(self._follow(), name=f"{self.name}-follow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
        await self._close_channel()
        for key in list(self.guests):
            self._forget(key, final=False)

    async def _close_channel(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    def status(self) -> dict[str, int]:
        return {**self.stats, self.kind: len(self.guests)}

    def reconfigure(self, settings: Settings) -> None:
        """``setIfName``/``setIfAlias`` changed by a reload apply to the pods already known."""
        self.settings = settings
        for guest in self.guests.values():
            self._claim_host_ports(guest)

    # ------------------------------------------------------------ host ports

    def _claim_host_ports(self, guest: Guest) -> None:
        name = self.port_name(guest.found)
        for ifindex in _host_ends(guest):
            if self.samples_host_ports():
                self.context.request_sampling(ifindex)
            if name is None:
                self.context.unname_port(ifindex)
            else:
                self.context.name_port(ifindex, name)

    def _release_host_ports(self, guest: Guest) -> None:
        for ifindex in _host_ends(guest):
            self.context.release_sampling(ifindex)
            self.context.unname_port(ifindex)

    def privileges(self) -> Privileges:
        """The runtime's socket's group, to connect again as the unprivileged user after the
        runtime restarts (it makes a new socket file): containerd's and CRI-O's sockets are
        root:root 0660 in a 0700 folder (``grpc.gid`` may name another group), so that is root's
        group, and the folder is searched with CAP_DAC_READ_SEARCH, kept anyway for /proc.  Not
        CAP_DAC_OVERRIDE: it would let the agent write any file, where root's group writes only
        what is group-writable for it.  CAP_SYS_ADMIN to enter a guest's network namespace,
        CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH for another user's /proc/<pid>/ns/net and io."""
        path = self.socket_path()
        try:
            gid = os.stat(path).st_gid if path else 0
        except OSError:
            gid = 0
        return Privileges({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}, {gid})

    # ------------------------------------------------------------ following the runtime

    async def _follow(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            path = self.socket_path()
            try:
                if path is None:
                    raise Unavailable("no runtime socket found")
                if self.channel is None or self.channel.socket_path != path:
                    await self._close_channel()
                    self.channel = _channel(path)
                await self._sync(await self._list(self.channel))
                if self._down_since is not None:
                    log.info(
                        "%s: runtime at %s is back after %.0f s", self.name, path, time.monotonic() - self._down_since
                    )
                    self._down_since = None
                elif self.stats["syncs"] == 0:
                    log.info("%s: following the runtime at %s (%d %s)", self.name, path, len(self.guests), self.kind)
                self.stats["syncs"] += 1
                backoff = BACKOFF_FIRST_S
                await asyncio.sleep(LIST_EVERY_S)
                continue
            except Unavailable as err:
                self.stats["runtime_unavailable"] += 1
                # a fresh channel next time: grpc's own reconnect backoff (1 s growing 1.6x to 120 s,
                # failing calls fast meanwhile) would hide a restarted runtime behind ours
                await self._close_channel()
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "%s: runtime unavailable (%s); retrying every %.0f-%.0f s",
                        self.name,
                        err,
                        BACKOFF_FIRST_S,
                        BACKOFF_MAX_S,
                    )
                else:
                    log.debug("%s: runtime still unavailable: %s", self.name, err)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _list(self, channel: Channel) -> dict[str, Any]:
        try:
            return await self.list_guests(channel)
        except Malformed as err:
            raise Unavailable(str(err)) from None
        except Exception as err:  # grpc's AioRpcError and whatever its channel raises
            raise Unavailable(rpc_error(err, channel.socket_path)) from None

    async def _sync(self, listed: dict[str, Any]) -> None:
        for key in [key for key in self.guests if key not in listed]:
            self._forget(key, final=True)
        new = [key for key in listed if key not in self.guests and key not in self._adding]
        if new:
            await asyncio.gather(*(self._add(key, listed[key]) for key in new))

    async def _add(self, key: str, listed: Any) -> None:
        assert self.channel is not None
        self._adding.add(key)
        try:
            try:
                found = await self.find(self.channel, key, listed)
            except Malformed as err:
                self.once("malformed_replies", "%s; skipped", err)
                return
            except Exception as err:
                self.stats["lookup_errors"] += 1
                log.debug("%s: %s: %s", self.name, key, rpc_error(err, self.channel.socket_path))
                return  # gone meanwhile, or the runtime went away: the next listing decides
            if found is None:
                return
            probe = await in_new_thread(self.prober.probe, found.pid, found.cgroup_owner, found.pod, name="k8s-probe")
            if probe.source is None:
                self.stats["probe_errors"] += 1
                log.debug("%s: %s: %s", self.name, found.hostname, probe.error)
                return  # most often: it stopped meanwhile
            if probe.interface_error:
                self.once("netns_errors", "%s: interfaces unknown (%s)", found.hostname, probe.interface_error)
            guest = self._track(key, found, probe)
            # the values a final sample carries if it stops before the first poll, read off the loop
            await in_new_thread(guest.read, self.disks, name="k8s-read")
            if self.guests.get(key) is guest:  # not forgotten meanwhile (stop)
                self._poll(guest)
        finally:
            self._adding.discard(key)

    def _track(self, key: str, found: Found, probe: PodProbe) -> Guest:
        guest = Guest(
            key,
            found,
            self.context.allocate_ds_index(found.uuid),
            probe,
            self.context.describe(found.hostname, uuid.UUID(bytes=found.uuid)),
        )
        self.guests[key] = guest
        self.traffic.claim(key, Owner(guest.ds_index, probe.netns), interface_keys(probe.interfaces))
        if probe.source is not None and not probe.source.own_netns and probe.source.dirs.unified is not None:
            self.socket_cgroups.claim(key, guest.ds_index, probe.source.dirs.unified)
        self.context.claim_container_ports(_host_ends(guest))
        self._claim_host_ports(guest)
        return guest

    def _poll(self, guest: Guest) -> None:
        """Its first reading in: from the next tick on, read off the loop and sampled."""
        guest.take(log, f"{self.name}: {guest.found.hostname}")
        name = f"{self.name} {guest.found.hostname}"
        self.context.add_poller(
            PollerSpec(
                DS_CLASS, guest.ds_index, lambda: self._collect(guest), name, True, read=lambda: guest.read(self.disks)
            )
        )
        self.stats["added"] += 1
        log.debug("%s: tracking %s as 3:%d", self.name, guest.found.hostname, guest.ds_index)

    def _forget(self, key: str, *, final: bool) -> None:
        guest = self.guests.pop(key, None)
        if guest is None:
            return
        records = self._records(guest, STATE_SHUTDOWN) if final and guest.totals.readings else None
        self.context.remove_poller(DS_CLASS, guest.ds_index, final=records)
        self.context.release_ds_index(guest.found.uuid)
        self.traffic.release(key)
        self.socket_cgroups.release(key)
        self.context.release_container_ports(_host_ends(guest))
        self._release_host_ports(guest)
        guest.close()
        self.stats["forgotten"] += 1

    def once(self, stat: str, message: str, *args: Any) -> None:
        """Count a fault; log its first occurrence only."""
        self.stats[stat] += 1
        if self.stats[stat] == 1:
            log.warning("%s: " + message + " (further ones counted, not logged)", self.name, *args)

    # ------------------------------------------------------------ counters

    def _collect(self, guest: Guest) -> list[Record]:
        guest.take(log, f"{self.name}: {guest.found.hostname}")
        return self._records(guest, STATE_RUNNING)

    def _records(self, guest: Guest, state: int) -> list[Record]:
        adapters = [HostAdapter(if_index=i.ifindex, macs=[i.mac]) for i in guest.probe.interfaces if i.mac]
        return [
            guest.description,
            HostParent(ds_class=2, ds_index=1),
            HostAdapters(adapters=adapters),
            *guest.totals.records(state, self._host_cpus, guest.totals.memory_limit or self._host_memory),
        ]

    def virtual_domains(self) -> int:
        return len(self.guests)

    # ------------------------------------------------------------ markTraffic

    def enrichers(self) -> Sequence[Enricher]:
        """Marking only with ``markTraffic = on``: without it, samples take the allocation-free path."""
        if not self.mark_traffic():
            return []
        return [OwnerMarking(self.traffic), SocketMarking(self.socket_cgroups)]


def _host_ends(guest: Guest) -> list[int]:
    """The host-side ifindexes of the guest's veths."""
    return [i.host_ifindex for i in guest.probe.interfaces if i.host_ifindex]


def _channel(path: str) -> Channel:
    try:
        return Channel(path)
    except ImportError as err:
        raise Unavailable(f"python3-grpcio is needed to talk to the runtime ({err})") from None
