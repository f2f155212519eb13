"""Which interfaces pcap {} blocks choose, and each one's sampling rate (REFERENCE.md section 4)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from hsflowd_py.config.parser import parse_config
from hsflowd_py.modules.pcap.interfaces import choose, sampling_rate
from hsflowd_py.readers.netclass import IFF_LOOPBACK, IFF_MASTER, IFF_UP, InterfaceInfo, read_interfaces

FIXTURES = Path(__file__).parent / "fixtures"
G = 1_000_000_000


def iface(name: str, ifindex: int, speed: int | None = 10 * G, **kw: object) -> InterfaceInfo:
    base = InterfaceInfo(
        name=name,
        ifindex=ifindex,
        iflink=ifindex,
        mac=bytes([2, 0, 0, 0, 0, ifindex]),
        flags=IFF_UP,
        arp_type=1,
        mtu=1500,
        operstate="up",
        carrier=True,
        speed=speed,
        duplex="full",
        devtype=None,
        master=None,
        has_device=True,
        stats={},
    )
    return replace(base, **kw)  # type: ignore[arg-type]


HOST = [
    iface("lo", 1, None, flags=IFF_UP | IFF_LOOPBACK, arp_type=772, mac=bytes(6), has_device=False),
    iface("eth0", 2, 1 * G),
    iface("eth1", 3, 10 * G),
    iface("bond0", 4, 20 * G, flags=IFF_UP | IFF_MASTER, devtype="bond", has_device=False),
    iface("eth1.100", 5, 10 * G, devtype="vlan", has_device=False),
    iface("veth9a1", 6, 10 * G, iflink=7, has_device=False),
    iface("docker0", 8, None, devtype="bridge", has_device=False),
    iface("tun0", 9, None, arp_type=65534, mac=None, has_device=False),
    iface("eth2", 10, None, flags=0, operstate="down"),
]


def chosen(conf: str) -> dict[str, int]:
    settings = parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 }} {conf} }}")
    return {t.name: t.sampling_rate for t in choose(HOST, settings).values()}


def test_dev_takes_the_named_interface_whatever_it_is() -> None:
    assert chosen("pcap { dev = lo } pcap { dev = veth9a1 } pcap { dev = bond0 }") == {
        "lo": 400,
        "veth9a1": 10000,
        "bond0": 20000,
    }


def test_a_pattern_skips_loopback_veth_bond_masters_and_vlans() -> None:
    assert set(chosen('pcap { dev.pattern = "." }')) == {"eth0", "eth1", "docker0", "tun0", "eth2"}
    assert set(chosen('pcap { dev.pattern = "^eth" }')) == {"eth0", "eth1", "eth2"}
    assert set(chosen('pcap { dev.pattern = "th1" }')) == {"eth1"}  # re.search: unanchored


def test_a_dynamic_block_takes_only_requested_interfaces_veths_included() -> None:
    """As the established agent's evt_get_tap: dev/pattern/speed decide, the type filters do not."""
    settings = parse_config(
        'sflow { collector { ip = 127.0.0.1 } pcap { dev.pattern = "^veth" dynamic = on sampling = 5 } '
        'pcap { dev.pattern = "^eth" } }'
    )

    def names(requested: set[int]) -> dict[str, int]:
        return {t.name: t.sampling_rate for t in choose(HOST, settings, requested).values()}

    assert names(set()) == {"eth0": 1000, "eth1": 10000, "eth2": 400}
    assert names({6}) == {"veth9a1": 5, "eth0": 1000, "eth1": 10000, "eth2": 400}
    assert names({6, 8, 2}) == names({6}), "docker0 fails the dynamic pattern; eth0 stays with its own block"


def test_speed_ranges_are_inclusive_and_skip_unknown_speeds() -> None:
    assert set(chosen("pcap { speed = 1G- }")) == {"eth0", "eth1"}
    assert set(chosen("pcap { speed = 1G }")) == {"eth0"}
    assert set(chosen("pcap { speed = 2G-10G }")) == {"eth1"}
    assert set(chosen("pcap { speed = 11G- }")) == set()


def test_every_criterion_of_a_block_must_match_and_the_first_block_wins() -> None:
    assert set(chosen('pcap { dev.pattern = "^eth" speed = 10G- }')) == {"eth1"}
    settings = parse_config(
        "sflow { collector { ip = 127.0.0.1 } pcap { dev = eth1 sampling = 7 sampler = cbpf } "
        'pcap { dev.pattern = "eth" sampling = 9 promisc = on } }'
    )
    taps = {t.name: t for t in choose(HOST, settings).values()}
    assert (taps["eth1"].sampling_rate, taps["eth1"].sampler, taps["eth1"].promisc) == (7, "cbpf", False)
    assert (taps["eth0"].sampling_rate, taps["eth0"].sampler, taps["eth0"].promisc) == (9, "auto", True)


def test_taps_carry_what_a_sampler_needs() -> None:
    settings = parse_config(
        "sflow { headerBytes = 200 collector { ip = 127.0.0.1 } pcap { dev = tun0 } pcap { dev = lo } }"
    )
    taps = {t.name: t for t in choose(HOST, settings).values()}
    assert (taps["tun0"].ifindex, taps["tun0"].ethernet, taps["tun0"].mac, taps["tun0"].header_bytes) == (
        9,
        False,
        None,
        200,
    )
    assert taps["lo"].ethernet  # loopback frames carry an all-zero MAC header


@pytest.mark.parametrize(
    ("conf", "speed", "rate"),
    [
        ("", 1 * G, 1000),  # ifSpeed / 1e6
        ("", 10 * G, 10000),
        ("", 10_000_000, 100),  # ... at least 100
        ("", None, 400),  # unknown speed: sampling
        ("sampling = 50", None, 50),
        ("sampling = 50", 1 * G, 1000),  # the established agent ignores `sampling` when the speed is known
        ("sampling = 50 sampling.bps_ratio = 0", 1 * G, 50),
        ("sampling.bps_ratio = 2000000", 1 * G, 500),
        ("sampling.bps_ratio = 10M", 1_000_000, 1),
        ("sampling.10G = 3000", 10 * G, 3000),
        ("sampling.10G = 3000", 1 * G, 1000),
        ("sampling.1G = 77 sampling.bps_ratio = 0", 1 * G, 77),
        ("sampling.100M = 20", 100_000_000, 20),
    ],
)
def test_sampling_rate_precedence(conf: str, speed: int | None, rate: int) -> None:
    settings = parse_config(f"sflow {{ {conf} collector {{ ip = 127.0.0.1 }} pcap {{ dev = x }} }}")
    assert sampling_rate(settings.pcap[0], settings, speed) == rate


def test_a_pcap_block_sampling_overrides_everything() -> None:
    settings = parse_config(
        "sflow { sampling.10G = 3 sampling.bps_ratio = 5 collector { ip = 127.0.0.1 } pcap { dev = x sampling = 12 } }"
    )
    assert sampling_rate(settings.pcap[0], settings, 10 * G) == 12


def test_choice_from_a_sysfs_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "host-debian12", root, symlinks=True)
    infos = read_interfaces(root)

    def names(conf: str) -> set[str]:
        return {
            t.name for t in choose(infos, parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 }} {conf} }}")).values()
        }

    assert names('pcap { dev.pattern = "." }') == {"eth0", "ifb0", "ifb1"}
    assert names("pcap { speed = 1M- }") == set()  # virtio reports speed -1: unknown
    assert names("pcap { dev = eth0 }") == {"eth0"}
