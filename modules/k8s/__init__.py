"""k8s { } and containerd { }: a node's pods, or containerd's own containers, as data sources 3:N.

``k8s { }``
    Pods through the Kubernetes Container Runtime Interface (``cri.py``: gRPC on the runtime's
    socket; containerd's CRI plugin, CRI-O, k3s: one code path).  The ready pod sandboxes are
    listed; a new pod's verbose status gives its sandbox pid, from which the host finds the pod
    cgroup (every container and the pause process once) and the pod's network namespace
    (``pod.py``).  2000's hostname is ``k8s__<pod>_<namespace>_u_a`` as the established agent names
    pods, so it carries the namespace (``pod.py`` says how names over 64 bytes are cut); its UUID is
    the pod's UID.  Each pod's host veth is asked for packet sampling (``pcap { dynamic = on }``)
    and, with ``setIfAlias`` and ``setIfName`` (both on by default, as there), carries the pod's
    hostname as its 0:1005 port name.  ``eof`` is accepted and ignored (``settings.py`` says why).

``containerd { }``
    Containers that containerd runs outside Kubernetes (every namespace but the CRI's ``k8s.io``),
    through containerd's own API (``containerd_api.py``): running tasks and their pids.  2000's
    hostname is the container id (the OCI spec's hostname with ``hostname = on``); its UUID is
    derived from the host's UUID and ``namespace/id``.  ``unixsock`` (addition) names the socket
    (default ``/run/containerd/containerd.sock``); ``forgetVMs`` is accepted, the global one applies.

What both share (following by listing, backoff, per-guest counters, marking): ``follower.py``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from hsflowd_py.module import register

from . import containerd_api, cri
from .channel import Channel
from .follower import Follower, Found
from .pod import cut_hostname, pod_hostname, pod_uuid
from .settings import ContainerdSettings, K8sSettings

CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


@register
class K8sModule(Follower):
    name = "k8s"
    kind = "pods"
    settings_type = K8sSettings

    def socket_path(self) -> str | None:
        """``unixsock``, else the first default socket that exists."""
        if self.settings.k8s and self.settings.k8s.unixsock:
            return self.settings.k8s.unixsock
        return next((p for p in cri.DEFAULT_SOCKETS if os.path.exists(p)), None)

    def mark_traffic(self) -> bool:
        return bool(self.settings.k8s and self.settings.k8s.mark_traffic)

    def samples_host_ports(self) -> bool:
        return True

    def port_name(self, found: Found) -> str | None:
        k8s = self.settings.k8s
        return found.hostname if k8s and k8s.set_if_alias and k8s.set_if_name else None

    async def list_guests(self, channel: Channel) -> dict[str, Any]:
        return await cri.list_ready(channel)

    async def find(self, channel: Channel, key: str, listed: Any) -> Found | None:
        sandbox = cri.parse_sandbox(listed)
        status = await cri.status(channel, sandbox.id)
        if status.pid is None:
            self.once("no_pid", "pod %s: the runtime gives no sandbox pid; skipped", sandbox.name)
            return None
        hostname = pod_hostname(sandbox.name, sandbox.namespace)
        return Found(hostname, pod_uuid(sandbox, self.context.host_uuid), status.pid, sandbox.uid, pod=True)


@register
class ContainerdModule(Follower):
    name = "containerd"
    kind = "containers"
    settings_type = ContainerdSettings

    def socket_path(self) -> str | None:
        c = self.settings.containerd
        return c.unixsock if c and c.unixsock else CONTAINERD_SOCKET

    def mark_traffic(self) -> bool:
        return bool(self.settings.containerd and self.settings.containerd.mark_traffic)

    async def list_guests(self, channel: Channel) -> dict[str, Any]:
        return await containerd_api.running_tasks(channel)

    async def find(self, channel: Channel, key: str, listed: Any) -> Found | None:
        task: containerd_api.Task = listed
        hostname = ""
        if self.settings.containerd and self.settings.containerd.hostname:
            hostname = await containerd_api.spec_hostname(channel, task)
        source_uuid = uuid.uuid5(self.context.host_uuid, task.name).bytes
        return Found(cut_hostname(hostname or task.container_id), source_uuid, task.pid, task.container_id, pod=False)
