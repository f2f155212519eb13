"""k8s { }: a Kubernetes node's pods as data sources 3:dsIndex, found through the runtime's CRI.

Following the runtime
    The Container Runtime Interface (``cri.py``, gRPC on the runtime's unix socket: containerd's
    CRI plugin, CRI-O, k3s) is the one code path for every runtime.  containerd 1.6 has no CRI
    event stream (GetContainerEvents came with 1.7), so the module lists the ready pod sandboxes
    every half second: a listing of 200 pods is a few milliseconds, a pod that lives one second is
    seen, and a runtime that restarts changes nothing (pods are keyed by sandbox id, so none is
    lost or counted twice; while the runtime is away the known pods are still polled from the
    kernel).  A new pod's verbose status gives its sandbox pid; the host side (``pod.py``) finds
    the pod cgroup and network namespace from it, once.  A runtime that is absent, slow (5 s
    deadline per call) or answers garbage is logged once and retried with backoff (1 s doubling
    to 30 s); when it is back, one line says so.

Per pod
    3:dsIndex (from the pod UID, so a pod keeps it across agent and runtime restarts; released
    after the global ``forgetVMs``) with 2000 (hostname ``k8s__<pod>_<namespace>_u_a`` as the
    established agent names pods, which carries the namespace; UUID the pod's UID; ``pod.py``
    says how names longer than 64 bytes are cut), 2001 (the pod's interfaces), 2002 (parent 2:1),
    2101 (CPU of the pod cgroup: every container and the pause process once), 2102 (memory; no
    limit: the host's RAM), 2103 (block I/O), 2104 (the pod namespace's network I/O, left out for
    a ``hostNetwork`` pod).  The first sample goes out on the next tick; a pod that stops gets a
    final sample with the last values read.  The host sample's 0:2100 counts the pods (through
    ``virtual_domains()``).

markTraffic
    ``marking.py``: 0:2210 on flow samples whose MACs or addresses are a pod's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hsflowd_py.config import Settings
from hsflowd_py.module import Module, register
from hsflowd_py.module_context import ModuleContext
from hsflowd_py.modules.docker.counters import Totals
from hsflowd_py.netns import in_new_thread
from hsflowd_py.privileges import Privileges
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.cpuinfo import read_cpuinfo
from hsflowd_py.readers.diskstats import read_counted_disks
from hsflowd_py.readers.meminfo import read_meminfo
from hsflowd_py.sflow.records import HostAdapter, HostAdapters, HostDescription, HostParent, Record

from .cri import DEFAULT_SOCKETS, Malformed, Runtime, Sandbox, parse_sandbox
from .marking import PodMarker
from .pod import PodProbe, PodProber, pod_hostname, pod_uuid

log = logging.getLogger("hsflowd.k8s")

DS_CLASS = 3
STATE_RUNNING, STATE_SHUTDOWN = 1, 4
LIST_EVERY_S = 0.5
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 30.0
DISKS_REFRESH_S = 60.0


class Unavailable(Exception):
    """The runtime cannot be listed now (no socket, refused, deadline, garbage)."""


@dataclass
class Pod:
    sandbox: Sandbox
    uuid: bytes
    hostname: str
    ds_index: int
    probe: PodProbe
    description: HostDescription
    totals: Totals = field(default_factory=Totals)
    logged: set[str] = field(default_factory=set)


@register
class K8sModule(Module):
    name = "k8s"
    enrich_order = 5

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.pods: dict[str, Pod] = {}
        self.marker = PodMarker()
        self.prober = PodProber(context.root)
        self.runtime: Runtime | None = None
        self._task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._adding: set[str] = set()
        self._disks: tuple[float, set[tuple[int, int]] | None] = (-DISKS_REFRESH_S, None)
        self._host_cpus = 1
        self._host_memory = 0

    @classmethod
    def wanted(cls, settings: Settings) -> bool:
        return settings.k8s is not None

    def socket_path(self) -> str | None:
        """``unixsock``, else the first default socket that exists."""
        if self.settings.k8s and self.settings.k8s.unixsock:
            return self.settings.k8s.unixsock
        return next((p for p in DEFAULT_SOCKETS if os.path.exists(p)), None)

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        root = self.context.root
        try:
            self._host_cpus = read_cpuinfo(root).count or 1
            self._host_memory = read_meminfo(root).get("MemTotal", 0)
        except ReaderError as err:
            log.warning("k8s: host CPU count or memory unknown (%s)", err)
        self._task = asyncio.create_task(self._follow(), name="k8s-follow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
        await self._close_runtime()
        for sid in list(self.pods):
            self._forget(sid, final=False)

    async def _close_runtime(self) -> None:
        if self.runtime is not None:
            await self.runtime.close()
            self.runtime = None

    def status(self) -> dict[str, int]:
        return {**self.stats, "pods": len(self.pods)}

    def privileges(self) -> Privileges:
        """The CRI socket is root's (0660): its group if it has one, else CAP_DAC_OVERRIDE to connect
        (again, after a runtime restart); CAP_SYS_ADMIN to enter a pod's network namespace,
        CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH for another user's /proc/<pid>/ns/net and io."""
        caps = {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"}
        groups: set[int] = set()
        path = self.socket_path()
        try:
            gid = os.stat(path).st_gid if path else 0
        except OSError:
            gid = 0
        if gid:
            groups.add(gid)
        else:
            caps.add("CAP_DAC_OVERRIDE")
        return Privileges(caps, groups)

    # ------------------------------------------------------------ following the runtime

    async def _follow(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            path = self.socket_path()
            try:
                if path is None:
                    raise Unavailable(f"no CRI socket at {', '.join(DEFAULT_SOCKETS)}")
                if self.runtime is None or self.runtime.socket_path != path:
                    await self._close_runtime()
                    self.runtime = _runtime(path)
                await self._sync(await self._list())
                if self._down_since is not None:
                    log.info("k8s: runtime at %s is back after %.0f s", path, time.monotonic() - self._down_since)
                    self._down_since = None
                elif self.stats["syncs"] == 0:
                    log.info("k8s: following the runtime at %s (%d pods)", path, len(self.pods))
                self.stats["syncs"] += 1
                backoff = BACKOFF_FIRST_S
                await asyncio.sleep(LIST_EVERY_S)
                continue
            except Unavailable as err:
                self.stats["runtime_unavailable"] += 1
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "k8s: runtime unavailable (%s); retrying every %.0f-%.0f s", err, BACKOFF_FIRST_S, BACKOFF_MAX_S
                    )
                else:
                    log.debug("k8s: runtime still unavailable: %s", err)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _list(self) -> dict[str, bytes]:
        assert self.runtime is not None
        try:
            return await self.runtime.list_ready()
        except Malformed as err:
            raise Unavailable(str(err)) from None
        except Exception as err:  # grpc's AioRpcError and whatever its channel raises
            raise Unavailable(_rpc_error(err, self.runtime.socket_path)) from None

    async def _sync(self, listed: dict[str, bytes]) -> None:
        for sid in [sid for sid in self.pods if sid not in listed]:
            self._forget(sid, final=True)
        new = []
        for sid, item in listed.items():
            if sid in self.pods or sid in self._adding:
                continue
            try:
                new.append(parse_sandbox(item))
            except Malformed as err:
                self._once("malformed_replies", "k8s: %s; skipped", err)
        if new:
            await asyncio.gather(*(self._add(s) for s in new))

    async def _add(self, sandbox: Sandbox) -> None:
        assert self.runtime is not None
        self._adding.add(sandbox.id)
        try:
            try:
                status = await self.runtime.status(sandbox.id)
            except Malformed as err:
                self._once("malformed_replies", "k8s: pod %s: %s; skipped", sandbox.name, err)
                return
            except Exception as err:
                self.stats["status_errors"] += 1
                log.debug("k8s: status of pod %s: %s", sandbox.name, _rpc_error(err, self.runtime.socket_path))
                return  # gone meanwhile, or the runtime went away: the next listing decides
            if status.pid is None:
                self._once("no_pid", "k8s: pod %s: the runtime gives no sandbox pid; skipped", sandbox.name)
                return
            probe = await in_new_thread(self.prober.probe, sandbox, status.pid, name="k8s-probe")
            if probe.source is None:
                self.stats["probe_errors"] += 1
                log.debug("k8s: pod %s/%s: %s", sandbox.namespace, sandbox.name, probe.error)
                return  # most often: it stopped meanwhile; else logged once per kind below
            if probe.interface_error:
                self._once("netns_errors", "k8s: pod %s: interfaces unknown (%s)", sandbox.name, probe.interface_error)
            self._track(sandbox, probe)
        finally:
            self._adding.discard(sandbox.id)

    def _track(self, sandbox: Sandbox, probe: PodProbe) -> None:
        pod_id = pod_uuid(sandbox, self.context.host_uuid)
        pod = Pod(
            sandbox,
            pod_id,
            pod_hostname(sandbox.name, sandbox.namespace),
            self.context.allocate_ds_index(pod_id),
            probe,
            self.context.describe(pod_hostname(sandbox.name, sandbox.namespace), uuid.UUID(bytes=pod_id)),
        )
        self.pods[sandbox.id] = pod
        self.marker.claim(sandbox.id, pod.ds_index, probe)
        self.context.claim_container_ports(i.host_ifindex for i in probe.interfaces if i.host_ifindex)
        self._read(pod)  # the values a final sample carries if the pod stops before the first poll
        self.context.add_poller(DS_CLASS, pod.ds_index, lambda: self._collect(pod), f"k8s {pod.hostname}", True)
        self.stats["added"] += 1
        log.debug("k8s: tracking pod %s as 3:%d", pod.hostname, pod.ds_index)

    def _forget(self, sid: str, *, final: bool) -> None:
        pod = self.pods.pop(sid, None)
        if pod is None:
            return
        records = self._records(pod, STATE_SHUTDOWN) if final and pod.totals.readings else None
        self.context.remove_poller(DS_CLASS, pod.ds_index, final=records)
        self.context.release_ds_index(pod.uuid)
        self.marker.release(sid)
        self.context.release_container_ports(i.host_ifindex for i in pod.probe.interfaces if i.host_ifindex)
        pod.probe.close()
        self.stats["forgotten"] += 1

    def _once(self, stat: str, message: str, *args: Any) -> None:
        """Count a fault; log its first occurrence only."""
        self.stats[stat] += 1
        if self.stats[stat] == 1:
            log.warning(message + " (further ones counted, not logged)", *args)

    # ------------------------------------------------------------ counters

    def _counted_disks(self) -> set[tuple[int, int]] | None:
        now = time.monotonic()
        if now - self._disks[0] >= DISKS_REFRESH_S:
            try:
                self._disks = (now, read_counted_disks(self.context.root))
            except ReaderError:
                self._disks = (now, None)
        return self._disks[1]

    def _read(self, pod: Pod) -> None:
        assert pod.probe.source is not None
        reading, errors = pod.probe.source.read(self._counted_disks())
        pod.totals.add(reading)
        for err in errors:
            if not err.missing and err.reason not in pod.logged:
                pod.logged.add(err.reason)
                log.warning("k8s: pod %s: %s", pod.hostname, err)

    def _collect(self, pod: Pod) -> list[Record]:
        self._read(pod)
        return self._records(pod, STATE_RUNNING)

    def _records(self, pod: Pod, state: int) -> list[Record]:
        adapters = [HostAdapter(if_index=i.ifindex, macs=[i.mac]) for i in pod.probe.interfaces if i.mac]
        return [
            pod.description,
            HostParent(ds_class=2, ds_index=1),
            HostAdapters(adapters=adapters),
            *pod.totals.records(state, self._host_cpus, pod.totals.memory_limit or self._host_memory),
        ]

    def virtual_domains(self) -> int:
        return len(self.pods)

    # ------------------------------------------------------------ markTraffic

    def enrich(self, packet: Any) -> None:
        k8s = self.settings.k8s
        if k8s is not None and k8s.mark_traffic:
            self.marker.mark(packet)


def _runtime(path: str) -> Runtime:
    try:
        return Runtime(path)
    except ImportError as err:
        raise Unavailable(f"python3-grpcio is needed to talk to the runtime ({err})") from None


def _rpc_error(err: Exception, socket_path: str) -> str:
    """One line for a failed call: grpc's status code and details, not its multi-line repr."""
    code = getattr(err, "code", None)
    details = getattr(err, "details", None)
    if callable(code) and callable(details):
        return f"{socket_path}: {code().name}: {details()}"
    return f"{socket_path}: {err!r}"
