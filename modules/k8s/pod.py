"""What the host shows of a pod: its cgroup, its network namespace and interfaces, its names.

A pod's containers (the sandbox's pause process included, once) live in child cgroups of one pod
cgroup, which kubelet makes under the kubepods QoS tree:

* cgroupfs driver: ``/kubepods[/burstable|/besteffort]/pod<uid>/<container id>``;
* systemd driver: ``/kubepods.slice[/kubepods-<qos>.slice]/kubepods-<qos>-pod<uid_with_underscores>.slice/
  cri-containerd-<id>.scope`` (``crio-<id>.scope`` under CRI-O).

So the pod's counters are the pod cgroup's: the parent of the sandbox process's own cgroup, once
that parent is checked to name the pod's UID (an agent in another pid namespace, or a pid reused
meanwhile, would otherwise read some other cgroup).  The same readers and totals as a docker
container's serve (``hsflowd_py/cgroup_counters.py``: cgroup v1 and v2; ``/proc/<pid>/net/dev`` of
the sandbox for the pod namespace's interfaces), and the interfaces, MACs and addresses come from
inside the namespace (``hsflowd_py/netns_links.py``).

Done once per pod, on a thread of its own: it reads files and enters a namespace.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from hsflowd_py.cgroup_counters import KernelSource, ProcDir
from hsflowd_py.netns_links import Interface, NamespaceError, read_interfaces, same_namespace
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers import cgroup as cg

from .cri import Sandbox

MAX_HOSTNAME_BYTES = 64
HASH_CHARS = 8
MAX_NAMESPACE_BYTES = 24


def pod_hostname(name: str, namespace: str) -> str:
    """The 2000 hostname of a pod, as the established agent forms it: ``k8s__<name>_<namespace>_u_a``
    (kubelet's dockershim naming with placeholder uid and attempt), so collectors that know its
    pods match these.

    sFlow's hostname is at most 64 bytes and pod names may have 253: a longer one keeps its
    namespace (cut to 24 bytes), cuts the pod name, and marks the cut with ``~`` and 8 hex digits
    of a hash of the full name, so two long names that share a start stay two names."""
    full = f"k8s__{name}_{namespace}_u_a"
    if len(full.encode()) <= MAX_HOSTNAME_BYTES:
        return full
    tail = f"~{_digest(full)}_{_cut(namespace, MAX_NAMESPACE_BYTES)}_u_a"
    return f"k8s__{_cut(name, MAX_HOSTNAME_BYTES - len('k8s__') - len(tail.encode()))}{tail}"


def cut_hostname(name: str) -> str:
    """A container's hostname within 64 bytes, cut as pod names are (``~`` and a hash of the whole)."""
    if len(name.encode()) <= MAX_HOSTNAME_BYTES:
        return name
    return f"{_cut(name, MAX_HOSTNAME_BYTES - HASH_CHARS - 1)}~{_digest(name)}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:HASH_CHARS]


def _cut(text: str, limit: int) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


def pod_uuid(sandbox: Sandbox, host_uuid: uuid.UUID) -> bytes:
    """The pod's Kubernetes UID (itself a UUID, what ``kubectl get pod -o jsonpath={.metadata.uid}``
    shows), stable across agent and runtime restarts; a runtime that gives no UUID there gets a
    name-based one under the host's."""
    try:
        return uuid.UUID(sandbox.uid).bytes
    except ValueError:
        return uuid.uuid5(host_uuid, f"{sandbox.namespace}/{sandbox.name}").bytes


def names_pod(path: str, uid: str) -> bool:
    """Whether a cgroup path's last part is the cgroup of pod ``uid`` (either driver's spelling)."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return f"pod{uid}" in last or f"pod{uid.replace('-', '_')}" in last


@dataclass
class PodProbe:
    source: KernelSource | None
    error: str
    interfaces: list[Interface]
    interface_error: str
    netns: str | None

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


class PodProber:
    """Probes pods under ``root``; keeps the cgroup mounts, read at the first probe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mounts: list[cg.CgroupMount] | None = None

    def probe(self, pid: int, owner: str, pod: bool) -> PodProbe:
        """Blocking: run it off the loop.  ``owner`` is the pod UID (``pod``: the counters are the
        parent cgroup's, where every container of the pod is) or the container id (its own cgroup)."""
        try:
            source = self._kernel_source(pid, owner, pod)
        except (ReaderError, OSError) as err:
            return PodProbe(None, str(err), [], "", None)
        interfaces: list[Interface] = []
        interface_error, netns = "", None
        if source.own_netns:
            netns = str(self.root / "proc" / str(pid) / "ns/net")
            try:
                interfaces = read_interfaces(Path(netns))
            except NamespaceError as err:
                interface_error = "" if err.gone else str(err)
        return PodProbe(source, "", interfaces, interface_error, netns)

    def _kernel_source(self, pid: int, owner: str, pod: bool) -> KernelSource:
        proc = ProcDir(self.root, pid)
        try:
            if self._mounts is None:
                self._mounts = cg.read_mounts(self.root)
            membership = cg.parse_membership(proc.read("cgroup"))
            if pod:
                parents = {key: path.rstrip("/").rsplit("/", 1)[0] for key, path in membership.items()}
                paths = {key: path for key, path in parents.items() if names_pod(path, owner)}
            else:  # the pid is the runtime's view; in another pid namespace it would be some other process
                paths = {key: path for key, path in membership.items() if owner in path}
            if not paths:
                some = next(iter(membership.values()), "")
                what = "a cgroup of pod" if pod else "the cgroup of container"
                raise ReaderError(f"its cgroup {some} is not in {what} {owner}", path=proc.path)
            dirs = cg.locate(self._mounts, paths)
            cg.read_cpu_ns(dirs)
            own_netns = not same_namespace(proc.path / "ns/net", self.root / "proc/self/ns/net")
            return KernelSource(self.root, proc, dirs, own_netns=own_netns, descendants=pod)
        except BaseException:
            proc.close()
            raise
