"""The Kubernetes Container Runtime Interface (CRI v1, ``runtime.v1.RuntimeService``): the calls the
module makes, over gRPC on the runtime's unix socket.

One code path for every CRI runtime: containerd's CRI plugin, CRI-O, k3s's embedded containerd.
The module lists the ready pod sandboxes and asks each new one's status once; the verbose status
carries the runtime's ``info`` JSON, where containerd and CRI-O give the sandbox's pid, from which
the host finds the pod's cgroup and network namespace.  Field numbers are those of
kubernetes/cri-api ``pkg/apis/runtime/v1/api.proto``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .channel import Channel, Malformed
from .proto import Field, Message, ProtoError

SERVICE = "/runtime.v1.RuntimeService/"
DEFAULT_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
)
"""Tried in this order when ``unixsock`` is not set (containerd, CRI-O, k3s)."""
SANDBOX_READY = 0

POD_METADATA = Message(
    "PodSandboxMetadata",
    (
        Field(1, "name", "string"),
        Field(2, "uid", "string"),
        Field(3, "namespace", "string"),
        Field(4, "attempt", "uint"),
    ),
)
POD_SANDBOX = Message(
    "PodSandbox",
    (
        Field(1, "id", "string"),
        Field(2, "metadata", "message", message=POD_METADATA),
    ),
)
LIST_POD_SANDBOX_REQUEST = Message(
    "ListPodSandboxRequest",
    (
        Field(
            1,
            "filter",
            "message",
            message=Message(
                "PodSandboxFilter",
                (Field(2, "state", "message", message=Message("PodSandboxStateValue", (Field(1, "state", "uint"),))),),
            ),
        ),
    ),
)
LIST_POD_SANDBOX_RESPONSE = Message("ListPodSandboxResponse", (Field(1, "items", "bytes", True),))
"""Items kept raw: each listing (every 0.5 s) reads only their ids, and only a new pod's item in full."""
POD_SANDBOX_ID = Message("PodSandbox", (Field(1, "id", "string"),))
POD_SANDBOX_STATUS_REQUEST = Message(
    "PodSandboxStatusRequest", (Field(1, "pod_sandbox_id", "string"), Field(2, "verbose", "bool"))
)
POD_IP = Message("PodIP", (Field(1, "ip", "string"),))
POD_SANDBOX_STATUS_RESPONSE = Message(
    "PodSandboxStatusResponse",
    (
        Field(
            1,
            "status",
            "message",
            message=Message(
                "PodSandboxStatus",
                (
                    Field(1, "id", "string"),
                    Field(2, "metadata", "message", message=POD_METADATA),
                    Field(3, "state", "uint"),
                    Field(
                        5,
                        "network",
                        "message",
                        message=Message(
                            "PodSandboxNetworkStatus",
                            (Field(1, "ip", "string"), Field(2, "additional_ips", "message", True, POD_IP)),
                        ),
                    ),
                ),
            ),
        ),
        Field(2, "info", "map"),
    ),
)


@dataclass(frozen=True)
class Sandbox:
    """A ready pod sandbox as listed."""

    id: str
    name: str
    namespace: str
    uid: str
    attempt: int


@dataclass(frozen=True)
class SandboxStatus:
    pid: int | None
    """The sandbox's (pause process's) pid in the runtime's view; None if the runtime does not say."""
    ips: tuple[str, ...]


def parse_listing(reply: bytes) -> dict[str, bytes]:
    """ListPodSandbox's reply as sandbox id → the item's bytes, for :func:`parse_sandbox`."""
    try:
        items = LIST_POD_SANDBOX_RESPONSE.decode(reply)["items"]
        return {POD_SANDBOX_ID.decode(item)["id"]: item for item in items}
    except ProtoError as err:
        raise Malformed(f"ListPodSandbox reply: {err}") from None


def parse_sandbox(item: bytes) -> Sandbox:
    """One listed item in full; an item without an id or a name is Malformed (not a pod to report)."""
    try:
        sandbox = POD_SANDBOX.decode(item)
    except ProtoError as err:
        raise Malformed(f"ListPodSandbox item: {err}") from None
    meta = sandbox["metadata"]
    if not sandbox["id"] or not meta or not meta["name"]:
        raise Malformed(f"ListPodSandbox item {sandbox['id'][:12]!r} without id or name")
    return Sandbox(sandbox["id"], meta["name"], meta["namespace"], meta["uid"], meta["attempt"])


def parse_status(reply: bytes) -> SandboxStatus:
    """PodSandboxStatus's (verbose) reply: the pid from the ``info`` JSON, the pod's addresses."""
    try:
        msg = POD_SANDBOX_STATUS_RESPONSE.decode(reply)
    except ProtoError as err:
        raise Malformed(f"PodSandboxStatus reply: {err}") from None
    network = (msg["status"] or {}).get("network") or {}
    ips = tuple(ip for ip in [network.get("ip", ""), *(a["ip"] for a in network.get("additional_ips", []))] if ip)
    return SandboxStatus(_pid(msg["info"].get("info", "")), ips)


def _pid(info: str) -> int | None:
    try:
        pid = json.loads(info).get("pid") if info else None
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


async def list_ready(channel: Channel) -> dict[str, bytes]:
    """The ready pod sandboxes (:func:`parse_listing`)."""
    request = LIST_POD_SANDBOX_REQUEST.encode({"filter": {"state": {"state": SANDBOX_READY}}})
    return parse_listing(await channel.call(SERVICE + "ListPodSandbox", request))


async def status(channel: Channel, sandbox_id: str) -> SandboxStatus:
    request = POD_SANDBOX_STATUS_REQUEST.encode({"pod_sandbox_id": sandbox_id, "verbose": True})
    return parse_status(await channel.call(SERVICE + "PodSandboxStatus", request))
