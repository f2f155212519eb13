"""/sys/class/net/<dev>: what the kernel says about each network interface.

sysfs shows the interfaces of the network namespace it was mounted in.  ``ifindex`` and
``iflink`` are what tie namespaces together: a veth's ``iflink`` is its peer's ifindex even
when the peer lives in a container's namespace.

How an interface is classified, from sysfs alone (no ethtool ioctl):

* loopback: the IFF_LOOPBACK flag;
* bridge, VLAN, bond, wlan…: ``DEVTYPE`` in ``uevent`` (``bridge``, ``vlan``, ``bond``);
  bond master/slave also from the IFF_MASTER / IFF_SLAVE flags;
* veth: an Ethernet device with no ``device`` link (virtual), no DEVTYPE, and an ``iflink``
  that is neither 0 nor its own ifindex (it points at the peer).  macvlan and ipvlan devices
  look the same in sysfs and are classified as veth too; the established agent tells them apart
  with ethtool's driver name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import ReaderError, key_values, list_dir, read_optional

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_PROMISC = 0x100
IFF_MASTER = 0x400
IFF_SLAVE = 0x800

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772

_ATTRIBUTES = ("iflink", "address", "type", "mtu", "operstate", "carrier", "speed", "duplex", "uevent")


@dataclass(frozen=True)
class InterfaceInfo:
    name: str
    ifindex: int
    iflink: int
    mac: bytes | None
    """6 bytes, or None when the device has no Ethernet address (tun, ipip, infiniband)."""
    flags: int
    arp_type: int
    """ARPHRD_* from ``type``: 1 Ethernet, 772 loopback, 65534 none (tun)…"""
    mtu: int | None
    operstate: str
    carrier: bool | None
    """None when sysfs refuses to say (device administratively down)."""
    speed: int | None
    """Bits per second; None when unknown (virtio reports -1, a down link refuses the read)."""
    duplex: str | None
    """``full``, ``half`` or None."""
    devtype: str | None
    master: str | None
    """Name of the bond or bridge this device is enslaved to."""
    has_device: bool
    """Backed by a bus device (PCI, virtio, USB): ``device`` exists."""
    stats: Mapping[str, int] = field(hash=False)
    """``statistics/*``: rx_bytes, rx_packets, multicast (received only), tx_dropped…"""

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def oper_up(self) -> bool:
        """Loopback, tun and dummy devices report operstate "unknown" while they work: trust carrier then."""
        return self.operstate == "up" or (self.operstate == "unknown" and self.carrier is True)

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)

    @property
    def promiscuous(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    @property
    def bond_master(self) -> bool:
        return bool(self.flags & IFF_MASTER)

    @property
    def bond_slave(self) -> bool:
        return bool(self.flags & IFF_SLAVE)

    @property
    def bridge(self) -> bool:
        return self.devtype == "bridge"

    @property
    def vlan(self) -> bool:
        return self.devtype == "vlan"

    @property
    def veth(self) -> bool:
        return (
            not self.has_device
            and self.arp_type == ARPHRD_ETHER
            and self.devtype is None
            and self.iflink not in (0, self.ifindex)
        )

    @property
    def peer_ifindex(self) -> int | None:
        """ifindex of a veth's other end, which may be in another network namespace."""
        return self.iflink if self.veth else None


def parse_mac(text: str) -> bytes | None:
    """``address``: colon-separated hex; None unless 6 bytes (tunnels have 0 or 4, infiniband 20)."""
    raw = bytes.fromhex(text.replace(":", ""))
    return raw if len(raw) == 6 else None


def parse_speed(text: str | None) -> int | None:
    """``speed`` is in Mb/s.  SPEED_UNKNOWN is -1, but kernels that printed it unsigned show it as
    4294967295, and drivers that filled only the 16-bit field as 65535; those and 0 mean unknown."""
    if text is None:
        return None
    mbps = int(text)
    return mbps * 1_000_000 if mbps > 0 and mbps not in (0xFFFF, 0xFFFFFFFF) else None


def parse_uevent(text: str) -> dict[str, str]:
    return {key: value for _, key, value in key_values(text, "=")}


def _int(text: str | None) -> int | None:
    return int(text) if text is not None else None


def _link_name(path: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _stats(path: Path) -> dict[str, int]:
    try:
        names = os.listdir(path)
    except OSError:
        return {}
    out = {}
    for name in names:
        value = read_optional(path / name)
        if value:
            out[name] = int(value)
    return out


def read_interface(root: Path, name: str) -> InterfaceInfo | None:
    """One interface, or None if it disappeared while being read."""
    base = root / "sys/class/net" / name
    ifindex = read_optional(base / "ifindex")
    flags = read_optional(base / "flags")
    if ifindex is None or flags is None:
        return None
    attr = {a: read_optional(base / a) for a in _ATTRIBUTES}
    try:
        iflink = _int(attr["iflink"])
        return InterfaceInfo(
            name=name,
            ifindex=int(ifindex),
            iflink=int(ifindex) if iflink is None else iflink,
            mac=parse_mac(attr["address"]) if attr["address"] else None,
            flags=int(flags, 16),
            arp_type=_int(attr["type"]) or 0,
            mtu=_int(attr["mtu"]),
            operstate=attr["operstate"] or "unknown",
            carrier=None if attr["carrier"] is None else attr["carrier"] == "1",
            speed=parse_speed(attr["speed"]),
            duplex=attr["duplex"] if attr["duplex"] in ("full", "half") else None,
            devtype=parse_uevent(attr["uevent"] or "").get("DEVTYPE"),
            master=_link_name(base / "master"),
            has_device=os.path.lexists(base / "device"),
            stats=_stats(base / "statistics"),
        )
    except ValueError as err:
        raise ReaderError(f"unexpected attribute value ({err})", path=base) from None


def read_interfaces(root: Path) -> list[InterfaceInfo]:
    """All interfaces in ifindex order.

    Not every entry is an interface: with the bonding module loaded, ``bonding_masters`` is a
    plain file in /sys/class/net.
    """
    net = root / "sys/class/net"
    found = (read_interface(root, name) for name in list_dir(net) if (net / name).is_dir())
    return sorted((i for i in found if i is not None), key=lambda i: i.ifindex)
