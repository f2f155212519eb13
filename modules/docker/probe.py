"""What the host shows of a container: its /proc entry, cgroup, network namespace and interfaces.

Done once per container start (and again when its pid or networks change), on a thread of its
own (``hsflowd_py.netns.in_new_thread``): it reads files and enters a namespace, which must not block the
loop.  What it cannot find decides the container's sources: no /proc entry or cgroup naming the
container means counters from the engine's stats; no namespace to enter means the engine's record
of its network attachments stands in for its interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hsflowd_py.cgroup_counters import KernelSource, ProcDir
from hsflowd_py.netns_links import Interface, NamespaceError, read_interfaces, same_namespace
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers import cgroup as cg

from .inspect import ContainerInfo


@dataclass
class Probe:
    source: KernelSource | None
    """None: counters from the engine's stats."""
    source_error: str
    pid_missing: bool
    """No /proc/<pid>: the container exited meanwhile, or the agent is in another pid namespace."""
    interfaces: list[Interface]
    interface_error: str
    netns: str | None
    """``/proc/<pid>/ns/net`` when the container has a network namespace of its own."""

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def endpoint_interfaces(info: ContainerInfo) -> list[Interface]:
    """The engine's record of a container's network attachments (no ifindex known)."""
    return [Interface(0, "", e.mac, e.addresses) for e in info.endpoints if e.mac or e.addresses]


class Prober:
    """Probes containers under ``root``; keeps the cgroup mounts, read at the first probe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mounts: list[cg.CgroupMount] | None = None

    def probe(self, info: ContainerInfo) -> Probe:
        """Blocking: run it off the loop."""
        source, source_error, pid_missing = None, "", False
        try:
            source = self._kernel_source(info)
        except (ReaderError, OSError) as err:
            source_error = str(err)
            pid_missing = isinstance(err, FileNotFoundError) and not (self.root / "proc" / str(info.pid)).exists()
        interfaces: list[Interface] = []
        interface_error, netns = "", None
        if source is not None and source.own_netns:
            netns = str(self.root / "proc" / str(info.pid) / "ns/net")
            try:
                interfaces = read_interfaces(Path(netns))
            except NamespaceError as err:
                interface_error = "" if err.gone else str(err)  # gone: the container is stopping
        if source is None or interface_error:
            interfaces = endpoint_interfaces(info)
        return Probe(source, source_error, pid_missing, interfaces, interface_error, netns)

    def _kernel_source(self, info: ContainerInfo) -> KernelSource:
        proc = ProcDir(self.root, info.pid)
        try:
            if self._mounts is None:
                self._mounts = cg.read_mounts(self.root)
            dirs = cg.locate(self._mounts, cg.parse_membership(proc.read("cgroup")))
            # The pid is the engine's view; an agent in another pid namespace would find some
            # other process there, so the cgroup must name the container.
            paths = [str(p) for p in (dirs.unified, *dirs.v1.values()) if p is not None]
            if not any(info.id in p for p in paths):
                raise ReaderError(f"its cgroups {paths[:1]} do not name container {info.short_id}", path=proc.path)
            cg.read_cpu_ns(dirs)
            own_netns = not same_namespace(proc.path / "ns/net", self.root / "proc/self/ns/net")
            return KernelSource(self.root, proc, dirs, own_netns=own_netns)
        except BaseException:
            proc.close()
            raise
