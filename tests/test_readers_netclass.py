"""/sys/class/net: attribute parsing and interface classification."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.netclass import parse_mac, parse_speed, parse_uevent, read_interface, read_interfaces

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    "text, mac",
    [
        ("02:fc:00:00:00:01", b"\x02\xfc\x00\x00\x00\x01"),
        ("00:00:00:00:00:00", b"\0" * 6),
        ("", None),  # tun
        ("0a:00:00:01", None),  # ipip: an IPv4 address
        ("80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:0b:0c", None),  # infiniband
    ],
)
def test_parse_mac(text: str, mac: bytes | None) -> None:
    assert parse_mac(text) == mac


@pytest.mark.parametrize(
    "text, bps",
    [
        ("10000", 10_000_000_000),
        ("1000", 1_000_000_000),
        ("-1", None),
        ("4294967295", None),
        ("65535", None),
        ("0", None),
        (None, None),
    ],
)
def test_parse_speed(text: str | None, bps: int | None) -> None:
    assert parse_speed(text) == bps


def test_parse_uevent() -> None:
    assert parse_uevent("DEVTYPE=vlan\nINTERFACE=eth0.100\nIFINDEX=6\n") == {
        "DEVTYPE": "vlan",
        "INTERFACE": "eth0.100",
        "IFINDEX": "6",
    }


@pytest.fixture
def oldkernel(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "host-oldkernel", root, symlinks=True)
    return root


# name: (up, oper_up, loopback, veth, peer, vlan, bridge, bond_master, bond_slave, master, promiscuous)
CLASSES = {
    "lo": (True, True, True, False, None, False, False, False, False, None, False),
    "eth0": (True, True, False, False, None, False, False, False, False, None, True),
    "eth1": (True, True, False, False, None, False, False, False, True, "bond0", False),
    "eth2": (True, True, False, False, None, False, False, False, True, "bond0", False),
    "bond0": (True, True, False, False, None, False, False, True, False, None, False),
    "eth0.100": (True, True, False, False, None, True, False, False, False, None, False),
    "br0": (True, True, False, False, None, False, True, False, False, None, False),
    "vnet0": (True, True, False, False, None, False, False, False, False, "br0", False),
    "vethA": (True, True, False, True, 42, False, False, False, False, None, False),
    "eth3": (False, False, False, False, None, False, False, False, False, None, False),
}


def test_classification(oldkernel: Path) -> None:
    found = {
        i.name: (i.up, i.oper_up, i.loopback, i.veth, i.peer_ifindex, i.vlan, i.bridge, i.bond_master,
                 i.bond_slave, i.master, i.promiscuous)
        for i in read_interfaces(oldkernel)
    }  # fmt: skip
    assert found == CLASSES


def test_interface_info_is_hashable(oldkernel: Path) -> None:
    assert len(set(read_interfaces(oldkernel))) == 10


def test_interfaces_in_ifindex_order_without_bonding_masters(oldkernel: Path) -> None:
    assert [(i.ifindex, i.name) for i in read_interfaces(oldkernel)] == [
        (1, "lo"), (2, "eth0"), (3, "eth1"), (4, "eth2"), (5, "bond0"),
        (6, "eth0.100"), (7, "br0"), (8, "vnet0"), (9, "vethA"), (10, "eth3"),
    ]  # fmt: skip


def test_attributes_of_one_interface(oldkernel: Path) -> None:
    eth0 = read_interface(oldkernel, "eth0")
    assert eth0 is not None
    assert (eth0.mac, eth0.mtu, eth0.arp_type, eth0.has_device) == (bytes.fromhex("001ec9aabb01"), 1500, 1, True)
    # Before 2.6.33 there were no speed or duplex attributes.
    assert (eth0.speed, eth0.duplex) == (None, None)
    assert eth0.stats["rx_bytes"] == 1234567890 and eth0.stats["multicast"] == 5000


def test_modern_attributes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "host-debian12", root)
    eth0 = read_interface(root, "eth0")
    assert eth0 is not None
    assert (eth0.speed, eth0.duplex, eth0.operstate, eth0.carrier) == (None, None, "up", True)  # virtio: -1
    (root / "sys/class/net/eth0/speed").write_text("25000\n")
    (root / "sys/class/net/eth0/duplex").write_text("full\n")
    eth0 = read_interface(root, "eth0")
    assert eth0 is not None and (eth0.speed, eth0.duplex) == (25_000_000_000, "full")
    ifb0 = read_interface(root, "ifb0")  # down: speed, duplex and carrier refuse to be read
    assert ifb0 is not None and (ifb0.up, ifb0.oper_up, ifb0.carrier, ifb0.speed) == (False, False, None, None)


def test_an_interface_that_vanishes_mid_read_is_left_out(oldkernel: Path) -> None:
    (oldkernel / "sys/class/net/eth3/ifindex").unlink()
    assert read_interface(oldkernel, "eth3") is None
    assert "eth3" not in [i.name for i in read_interfaces(oldkernel)]


def test_unparseable_attribute_names_the_interface(oldkernel: Path) -> None:
    (oldkernel / "sys/class/net/eth0/flags").write_text("up\n")
    with pytest.raises(ReaderError) as err:
        read_interfaces(oldkernel)
    assert err.value.path == oldkernel / "sys/class/net/eth0"


def test_no_sysfs(tmp_path: Path) -> None:
    with pytest.raises(ReaderError) as err:
        read_interfaces(tmp_path)
    assert err.value.missing
