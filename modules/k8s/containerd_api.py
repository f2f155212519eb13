"""containerd's own API (``containerd.services.*.v1``), for ``containerd { }``: containers run by
containerd directly (nerdctl, ctr, BuildKit, Docker's own containerd), which the CRI does not show.

Every namespace but ``k8s.io`` (the CRI's, whose containers are pods: ``k8s { }`` reports them) is
listed, and in each the running tasks with their pids; a new container's record gives its spec,
whose ``hostname`` serves ``hostname = on``.  Field numbers from containerd's ``api/services/
namespaces/v1/namespace.proto``, ``tasks/v1/tasks.proto``, ``containers/v1/containers.proto`` and
``api/types/task/task.proto``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .channel import Channel, Malformed
from .proto import Field, Message, ProtoError

CRI_NAMESPACE = "k8s.io"
TASK_RUNNING = 2

LIST_NAMESPACES_RESPONSE = Message(
    "ListNamespacesResponse",
    (Field(1, "namespaces", "message", True, Message("Namespace", (Field(1, "name", "string"),))),),
)
PROCESS = Message(
    "Process",
    (Field(1, "container_id", "string"), Field(2, "id", "string"), Field(3, "pid", "uint"), Field(4, "status", "uint")),
)
"""Tasks.List fills ``id`` (the task's, which is its container's id) and leaves ``container_id`` empty
(containerd's services/tasks/local.go ``getProcessState``); either is taken."""
LIST_TASKS_RESPONSE = Message("ListTasksResponse", (Field(1, "tasks", "message", True, PROCESS),))
GET_CONTAINER_REQUEST = Message("GetContainerRequest", (Field(1, "id", "string"),))
ANY = Message("Any", (Field(1, "type_url", "string"), Field(2, "value", "bytes")))
GET_CONTAINER_RESPONSE = Message(
    "GetContainerResponse",
    (
        Field(
            1,
            "container",
            "message",
            message=Message("Container", (Field(1, "id", "string"), Field(5, "spec", "message", message=ANY))),
        ),
    ),
)


@dataclass(frozen=True)
class Task:
    namespace: str
    container_id: str
    pid: int

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.container_id}"

    @property
    def key(self) -> str:
        """With the pid: a container whose task is started again is a new guest (new pid, new
        /proc entry) under the same name, and so the same UUID and dsIndex."""
        return f"{self.name}@{self.pid}"


def _decode(message: Message, reply: bytes, what: str) -> dict[str, object]:
    try:
        return message.decode(reply)
    except ProtoError as err:
        raise Malformed(f"{what} reply: {err}") from None


async def running_tasks(channel: Channel) -> dict[str, Task]:
    """Running tasks of every namespace but the CRI's, by :attr:`Task.key`."""
    reply = await channel.call("/containerd.services.namespaces.v1.Namespaces/List", b"")
    namespaces = _decode(LIST_NAMESPACES_RESPONSE, reply, "Namespaces.List")["namespaces"]
    out: dict[str, Task] = {}
    for ns in namespaces:  # type: ignore[attr-defined]
        name = ns["name"]
        if not name or name == CRI_NAMESPACE:
            continue
        tasks = await channel.call("/containerd.services.tasks.v1.Tasks/List", b"", namespace=name)
        for t in _decode(LIST_TASKS_RESPONSE, tasks, "Tasks.List")["tasks"]:  # type: ignore[attr-defined]
            cid = t["container_id"] or t["id"]
            if t["status"] == TASK_RUNNING and cid and t["pid"]:
                task = Task(name, cid, t["pid"])
                out[task.key] = task
    return out


async def spec_hostname(channel: Channel, task: Task) -> str:
    """The hostname in the container's OCI spec ('' when it sets none)."""
    request = GET_CONTAINER_REQUEST.encode({"id": task.container_id})
    reply = await channel.call("/containerd.services.containers.v1.Containers/Get", request, task.namespace)
    container = _decode(GET_CONTAINER_RESPONSE, reply, "Containers.Get")["container"] or {}
    spec = container.get("spec") or {}  # type: ignore[union-attr]
    try:
        hostname = json.loads(spec.get("value") or b"{}").get("hostname", "")
    except (ValueError, AttributeError):
        return ""
    return hostname if isinstance(hostname, str) else ""
