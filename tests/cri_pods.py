"""Pods made the way kubelet makes them: RunPodSandbox, CreateContainer, StartContainer over the CRI.

A minimal synchronous CRI client for the tests, on the module's own wire codec
(``modules/k8s/proto.py``) with the request messages kubelet sends (field numbers from
kubernetes/cri-api ``pkg/apis/runtime/v1/api.proto``); replies are read with the module's parsers
where it has them, so a test that lists pods through here and through the module compares two
independent paths only where the runtime is the ground truth (the pod's pid, its addresses: from
/proc and the kernel).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from containerd import BUSYBOX_IMAGE, CGROUP_TOP

from hsflowd_py.modules.k8s.cri import POD_METADATA, SERVICE
from hsflowd_py.modules.k8s.proto import Field, Message

STRING_ID = (Field(1, "id", "string"),)
NODE = 2
"""NamespaceMode NODE: the host's namespace (a ``hostNetwork: true`` pod's network)."""
NAMESPACE_OPTION = Message("NamespaceOption", (Field(1, "network", "uint"),))


def security_context(name: str, number: int) -> Message:
    """A Linux*SecurityContext with only its NamespaceOption (field ``number``)."""
    return Message(name, (Field(number, "namespace_options", "message", message=NAMESPACE_OPTION),))


LINUX_POD = Message(
    "LinuxPodSandboxConfig",
    (
        Field(1, "cgroup_parent", "string"),
        Field(2, "security_context", "message", message=security_context("LinuxSandboxSecurityContext", 1)),
    ),
)
LINUX_CONTAINER = Message(
    "LinuxContainerConfig",
    (Field(2, "security_context", "message", message=security_context("LinuxContainerSecurityContext", 3)),),
)
POD_CONFIG = Message(
    "PodSandboxConfig",
    (
        Field(1, "metadata", "message", message=POD_METADATA),
        Field(2, "hostname", "string"),
        Field(3, "log_directory", "string"),
        Field(6, "labels", "map"),
        Field(8, "linux", "message", message=LINUX_POD),
    ),
)
RUN_POD = Message("RunPodSandboxRequest", (Field(1, "config", "message", message=POD_CONFIG),))
CONTAINER_CONFIG = Message(
    "ContainerConfig",
    (
        Field(1, "metadata", "message", message=Message("ContainerMetadata", (Field(1, "name", "string"),))),
        Field(2, "image", "message", message=Message("ImageSpec", (Field(1, "image", "string"),))),
        Field(3, "command", "string", repeated=True),
        Field(4, "args", "string", repeated=True),
        Field(11, "log_path", "string"),
        Field(15, "linux", "message", message=LINUX_CONTAINER),
    ),
)
CREATE_CONTAINER = Message(
    "CreateContainerRequest",
    (
        Field(1, "pod_sandbox_id", "string"),
        Field(2, "config", "message", message=CONTAINER_CONFIG),
        Field(3, "sandbox_config", "message", message=POD_CONFIG),
    ),
)
ONE_ID = Message("id", STRING_ID)
LIST_ALL = Message("ListPodSandboxResponse", (Field(1, "items", "message", True, Message("PodSandbox", STRING_ID)),))


@dataclass(frozen=True)
class Pod:
    sandbox_id: str
    name: str
    namespace: str
    uid: str
    containers: tuple[str, ...]


class Cri:
    def __init__(self, socket: Path) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")

    def call(self, method: str, request: bytes, timeout: float = 60) -> bytes:
        reply: bytes = self.channel.unary_unary(SERVICE + method)(request, timeout=timeout)
        return reply

    def run_pod(
        self,
        name: str,
        namespace: str = "default",
        command: tuple[str, ...] = ("sleep", "3600"),
        host_network: bool = False,
    ) -> Pod:
        """A pod with one busybox container running ``command``, in kubelet's cgroupfs layout;
        ``host_network``: in the host's network namespace, as kubelet asks for a ``hostNetwork: true``
        pod (NamespaceOption network = NODE for the sandbox and its containers)."""
        uid = str(uuid.uuid4())
        namespaces = {"namespace_options": {"network": NODE if host_network else 0}}
        config = {
            "metadata": {"name": name, "uid": uid, "namespace": namespace, "attempt": 0},
            "hostname": "" if host_network else name,
            "labels": {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace},
            "linux": {"cgroup_parent": f"/{CGROUP_TOP}/besteffort/pod{uid}", "security_context": namespaces},
        }
        sandbox = ONE_ID.decode(self.call("RunPodSandbox", RUN_POD.encode({"config": config})))["id"]
        containers = ()
        if command:
            created = self.call(
                "CreateContainer",
                CREATE_CONTAINER.encode(
                    {
                        "pod_sandbox_id": sandbox,
                        "config": {
                            "metadata": {"name": "main"},
                            "image": {"image": BUSYBOX_IMAGE},
                            "command": list(command[:1]),
                            "args": list(command[1:]),
                            "linux": {"security_context": namespaces},
                        },
                        "sandbox_config": config,
                    }
                ),
            )
            cid = ONE_ID.decode(created)["id"]
            self.call("StartContainer", ONE_ID.encode({"id": cid}))
            containers = (cid,)
        return Pod(sandbox, name, namespace, uid, containers)

    def remove_pod(self, sandbox_id: str) -> None:
        """StopPodSandbox (stops its containers, tears its network down) then RemovePodSandbox."""
        self.call("StopPodSandbox", ONE_ID.encode({"id": sandbox_id}))
        self.call("RemovePodSandbox", ONE_ID.encode({"id": sandbox_id}))

    def sandbox_ids(self) -> list[str]:
        """Every sandbox, ready or not."""
        return [item["id"] for item in LIST_ALL.decode(self.call("ListPodSandbox", b""))["items"]]

    def close(self) -> None:
        self.channel.close()


def remove_all(socket: Path) -> None:
    if not socket.exists():
        return
    cri = Cri(socket)
    try:
        for sandbox in cri.sandbox_ids():
            cri.remove_pod(sandbox)
    except grpc.RpcError:
        pass
    finally:
        cri.close()
