"""A container's network interfaces, read inside its network namespace.

The interfaces, their MACs and addresses are only visible from inside the namespace
(``/proc/<pid>/net/dev`` names them but has no MACs, and sysfs shows the namespace it was
mounted in), and the engine's own record (NetworkSettings) misses interfaces that CNI plugins or
``ip link`` add.  So a new thread enters the namespace (``hsflowd_py/netns.py``, which also says
why such threads start from the event loop's thread), opens a netlink socket there and lists
links and addresses, and ends right after.  (pyroute2's NetNS would fork a helper process per
namespace instead.)

A container-side veth's IFLA_LINK is the ifindex of its peer, in the peer's namespace; the peer
is taken as the host's end only after checking, in the agent's namespace, that it is a veth
pointing back at the container's interface.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

from hsflowd_py.netns import enter_namespace, namespace_id

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
RT_SCOPE_UNIVERSE = 0
VISIT_TIMEOUT_S = 5.0


class NamespaceError(Exception):
    """The namespace could not be entered or read; ``gone`` when its process has exited meanwhile."""

    def __init__(self, message: str, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


@dataclass(frozen=True)
class Interface:
    ifindex: int
    """In the container's namespace."""
    name: str
    mac: bytes | None
    addresses: tuple[IPv4Address | IPv6Address, ...]
    """Global-scope addresses: link-local ones repeat across links and identify nothing."""
    veth_peer: int | None = None
    """For a veth: IFLA_LINK, the peer's ifindex in the peer's namespace."""
    host_ifindex: int | None = None
    """The host-side end of the veth, once confirmed to be in the agent's namespace."""


def same_namespace(a: Path, b: Path) -> bool:
    """Whether two ``ns/net`` links name the same namespace (same device and inode)."""
    try:
        return namespace_id(a) == namespace_id(b)
    except OSError:
        return False


def _mac(text: str | None) -> bytes | None:
    if not text:
        return None
    raw = bytes.fromhex(text.replace(":", ""))
    return raw if len(raw) == 6 and any(raw) else None


def _list(ipr: Any) -> list[Interface]:
    addresses: dict[int, list[IPv4Address | IPv6Address]] = {}
    for a in ipr.get_addr():
        if a["scope"] == RT_SCOPE_UNIVERSE and (text := a.get_attr("IFA_ADDRESS")):
            addresses.setdefault(a["index"], []).append(ip_address(text))
    out = []
    for link in ipr.get_links():
        if link["flags"] & IFF_LOOPBACK or not link["flags"] & IFF_UP:
            continue
        veth = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth"
        out.append(
            Interface(
                ifindex=link["index"],
                name=link.get_attr("IFLA_IFNAME") or "",
                mac=_mac(link.get_attr("IFLA_ADDRESS")),
                addresses=tuple(addresses.get(link["index"], ())),
                veth_peer=link.get_attr("IFLA_LINK") if veth else None,
            )
        )
    return out


def _visit(ns_path: Path, result: dict[str, Any]) -> None:
    """Thread body: enter the namespace, list, and end (never returning to the agent's namespace)."""
    try:
        enter_namespace(ns_path)
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            result["interfaces"] = _list(ipr)
    except Exception as err:  # reported to the caller, who logs it with the container's name
        result["error"] = err


def _confirm_host_ends(interfaces: list[Interface]) -> list[Interface]:
    """Keep a veth peer as the host's end only if, here, it is a veth pointing back at the container."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    out = []
    with IPRoute() as ipr:
        for i in interfaces:
            host_end = None
            if i.veth_peer:
                try:
                    link = ipr.get_links(i.veth_peer)[0]
                except NetlinkError:
                    link = None
                if (
                    link is not None
                    and link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth"
                    and link.get_attr("IFLA_LINK") == i.ifindex
                ):
                    host_end = i.veth_peer
            out.append(replace(i, host_ifindex=host_end))
    return out


def read_interfaces(ns_path: Path) -> list[Interface]:
    """The up, non-loopback interfaces of the namespace at ``ns_path`` (blocking: call off the loop)."""
    result: dict[str, Any] = {}
    t = threading.Thread(target=_visit, args=(ns_path, result), name="netns-links", daemon=True)
    t.start()
    t.join(VISIT_TIMEOUT_S)
    if t.is_alive():
        raise NamespaceError(f"reading {ns_path} took more than {VISIT_TIMEOUT_S} s")
    if "error" in result:
        err = result["error"]
        raise NamespaceError(f"{ns_path}: {err}", gone=isinstance(err, FileNotFoundError | ProcessLookupError)) from err
    try:
        return _confirm_host_ends(result["interfaces"])
    except Exception as err:
        raise NamespaceError(f"checking the host ends of {ns_path}: {err}") from err
