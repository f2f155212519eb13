"""What the module keeps from an inspect reply (``GET /containers/<id>/json``), checked field by field.

A reply that lacks a field the module needs, or holds one of the wrong type, raises
:class:`~.engine.Malformed` naming the field, so the log says what the engine sent.  Fields that
old engines or other platforms leave out (``CpuCount``, ``NanoCpus``, ``Labels``…) default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from .engine import Malformed, valid_id

PODSANDBOX_LABEL = ("io.kubernetes.docker.type", "podsandbox")
K8S_CONTAINER = "io.kubernetes.container.name"
K8S_POD = "io.kubernetes.pod.name"
K8S_NAMESPACE = "io.kubernetes.pod.namespace"

_PAUSE_IMAGE = re.compile(r"(^|/)pause([:@]|$)")


@dataclass(frozen=True)
class Endpoint:
    """A network attachment as the engine recorded it (bridge-style networks only)."""

    mac: bytes | None
    addresses: tuple[IPv4Address | IPv6Address, ...]


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    """Without the engine's leading ``/``."""
    hostname: str
    pid: int
    running: bool
    paused: bool
    image: str
    labels: Mapping[str, str]
    memory_limit: int
    """HostConfig.Memory in bytes; 0 = no limit."""
    cpu_count: int
    nano_cpus: int
    cpuset_size: int
    """CPUs in HostConfig.CpusetCpus; 0 when not pinned."""
    endpoints: tuple[Endpoint, ...]

    @property
    def uuid(self) -> bytes:
        """The container's UUID: the first 16 bytes of its id (as the established agent does)."""
        return bytes.fromhex(self.id[:32])

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def pod_sandbox(self) -> bool:
        """A Kubernetes pause container, which only holds the pod's namespaces."""
        key, value = PODSANDBOX_LABEL
        return self.labels.get(key) == value or bool(_PAUSE_IMAGE.search(self.image))

    @property
    def display_name(self) -> str:
        """``namespace/pod/container`` for Kubernetes containers (their engine names are long
        generated strings), otherwise the engine's name."""
        parts = [self.labels.get(k, "") for k in (K8S_NAMESPACE, K8S_POD, K8S_CONTAINER)]
        return "/".join(parts) if all(parts) else self.name

    def vcpus(self, host_cpus: int) -> int:
        """CPUs the container may use: ``--cpu-count``, else ``--cpus`` rounded up (1.5 CPUs of
        quota can keep 2 busy), else its cpuset, else all of the host's."""
        if self.cpu_count > 0:
            return self.cpu_count
        if self.nano_cpus > 0:
            return max(1, math.ceil(self.nano_cpus / 1e9))
        return self.cpuset_size or host_cpus


def cpuset_size(text: str) -> int:
    """``0-3,6`` → 5; ``""`` → 0."""
    count = 0
    for part in filter(None, text.split(",")):
        low, _, high = part.strip().partition("-")
        try:
            count += int(high or low) - int(low) + 1
        except ValueError:
            raise Malformed(f"HostConfig.CpusetCpus {text!r} is not a CPU list") from None
    return count


def _field(obj: Mapping[str, Any], path: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """``obj[a][b]…`` for path ``a.b``; ``default`` when absent or null (required if not given)."""
    value: Any = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            if default is ...:
                raise Malformed(f"inspect reply lacks {path}")
            return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Malformed(f"inspect reply field {path} is {type(value).__name__}: {str(value)[:80]}")
    return value


def _endpoints(networks: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    out = []
    for name, net in networks.items():
        if not isinstance(net, Mapping):
            raise Malformed(f"inspect reply field NetworkSettings.Networks.{name} is not an object")
        mac_text = _field(net, "MacAddress", str, "")
        try:
            mac = bytes.fromhex(mac_text.replace(":", "")) if mac_text else None
            addresses = tuple(ip_address(a) for k in ("IPAddress", "GlobalIPv6Address") if (a := net.get(k)))
        except ValueError as err:
            raise Malformed(f"inspect reply field NetworkSettings.Networks.{name}: {err}") from None
        out.append(Endpoint(mac if mac and len(mac) == 6 else None, addresses))
    return tuple(out)


def parse_inspect(reply: Mapping[str, Any]) -> ContainerInfo:
    cid = _field(reply, "Id", str)
    if not valid_id(cid):
        raise Malformed(f"inspect reply Id {cid[:80]!r} is not 64 hex digits")
    labels = _field(reply, "Config.Labels", Mapping, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise Malformed("inspect reply field Config.Labels holds non-string values")
    return ContainerInfo(
        id=cid,
        name=_field(reply, "Name", str).lstrip("/"),
        hostname=_field(reply, "Config.Hostname", str, ""),
        pid=_field(reply, "State.Pid", int),
        running=_field(reply, "State.Running", bool),
        paused=_field(reply, "State.Paused", bool, False),
        image=_field(reply, "Config.Image", str, ""),
        labels=dict(labels),
        memory_limit=_field(reply, "HostConfig.Memory", int, 0),
        cpu_count=_field(reply, "HostConfig.CpuCount", int, 0),
        nano_cpus=_field(reply, "HostConfig.NanoCpus", int, 0),
        cpuset_size=cpuset_size(_field(reply, "HostConfig.CpusetCpus", str, "")),
        endpoints=_endpoints(_field(reply, "NetworkSettings.Networks", Mapping, {})),
    )
