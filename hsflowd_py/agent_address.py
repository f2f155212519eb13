"""Choose the agent address that identifies this host to collectors.

Collectors key everything on the agent address, so it must be stable across
restarts and prefer an address other hosts can route to.  The ranking is the
established agent's; the selection is a pure function so tests can feed it any
set of interfaces.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from .config.settings import AgentCidr
from .netlink import dump_addresses

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Higher wins.
RANK_LOOPBACK = 1
RANK_SELF_ASSIGNED = 2
RANK_LINK_LOCAL = 3
RANK_VLAN = 4
RANK_UNIQUE_LOCAL6 = 5
RANK_GLOBAL6 = 6
RANK_PRIVATE4 = 7
RANK_GLOBAL4 = 8
RANK_AGENT_CIDR = 20
RANK_AGENT_DEV = 30

_SELF_ASSIGNED4 = ipaddress.ip_network("169.254.0.0/16")
_UNIQUE_LOCAL6 = ipaddress.ip_network("fc00::/7")
_RFC1918 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


@dataclass(frozen=True)
class LocalAddress:
    """An address configured on a local interface."""

    ifname: str
    ifindex: int
    ip: IPAddress
    vlan: bool = False


def base_rank(a: LocalAddress) -> int:
    ip = a.ip
    if ip.is_loopback:
        return RANK_LOOPBACK
    if ip.version == 4 and ip in _SELF_ASSIGNED4:
        return RANK_SELF_ASSIGNED
    if ip.is_link_local:
        return RANK_LINK_LOCAL
    if a.vlan:
        return RANK_VLAN
    if ip.version == 6:
        return RANK_UNIQUE_LOCAL6 if ip in _UNIQUE_LOCAL6 else RANK_GLOBAL6
    return RANK_PRIVATE4 if any(ip in n for n in _RFC1918) else RANK_GLOBAL4


def select_agent_address(
    addresses: Iterable[LocalAddress],
    agent_ip: str | None = None,
    agent_dev: str | None = None,
    cidrs: Iterable[AgentCidr] = (),
) -> IPAddress | None:
    """The best address: ``agentIP`` wins; then cidr/dev matches; then the ranking; ties to the lower ifIndex."""
    if agent_ip:
        return ipaddress.ip_address(agent_ip)
    cidrs = list(cidrs)
    best: tuple[int, int, bool, int] | None = None
    chosen: IPAddress | None = None
    for a in addresses:
        matches = [c for c in cidrs if c.network.version == a.ip.version and a.ip in c.network]
        if any(c.exclude for c in matches):
            continue
        rank = base_rank(a)
        if matches:
            rank += RANK_AGENT_CIDR
        if agent_dev and a.ifname == agent_dev:
            rank += RANK_AGENT_DEV
        # Higher rank, then lower ifIndex, then IPv4 over IPv6, then the lower address (determinism).
        key = (rank, -a.ifindex, a.ip.version == 4, -int(a.ip))
        if best is None or key > best:
            best, chosen = key, a.ip
    return chosen


def local_addresses() -> list[LocalAddress]:
    """The addresses of this host's interfaces, with ifIndex and VLAN flag."""
    vlans = _vlan_names()
    out: list[LocalAddress] = []
    names: dict[int, str | None] = {}
    for ifindex, raw in dump_addresses():
        if ifindex not in names:
            try:
                names[ifindex] = socket.if_indextoname(ifindex)
            except OSError:
                names[ifindex] = None  # gone since the dump
        name = names[ifindex]
        if name is None:
            continue
        ip = ipaddress.ip_address(raw)
        out.append(LocalAddress(name, ifindex, ip, vlan=name in vlans if vlans is not None else "." in name))
    return out


def _vlan_names() -> set[str] | None:
    """VLAN sub-interfaces from the 8021q table; None without the module (then names like eth0.10)."""
    try:
        with open("/proc/net/vlan/config") as f:
            return {line.split("|", 1)[0].strip() for line in f if "|" in line}
    except OSError:
        return None
