"""Agent address ranking, agentIP / agent / agent.cidr, ties to the lower ifIndex."""

import ipaddress

import pytest

from hsflowd_py.agent_address import LocalAddress, local_addresses, select_agent_address
from hsflowd_py.config.settings import AgentCidr

LO = LocalAddress("lo", 1, ipaddress.ip_address("127.0.0.1"))
LO6 = LocalAddress("lo", 1, ipaddress.ip_address("::1"))
PRIV = LocalAddress("eth0", 2, ipaddress.ip_address("10.1.2.3"))
PRIV_B = LocalAddress("eth1", 3, ipaddress.ip_address("192.168.1.9"))
GLOBAL4 = LocalAddress("eth2", 5, ipaddress.ip_address("198.51.100.7"))
GLOBAL6 = LocalAddress("eth0", 2, ipaddress.ip_address("2001:db8::7"))
ULA = LocalAddress("eth0", 2, ipaddress.ip_address("fd00:252::1"))
LINK6 = LocalAddress("eth0", 2, ipaddress.ip_address("fe80::1"))
SELF4 = LocalAddress("eth3", 6, ipaddress.ip_address("169.254.3.3"))
VLAN = LocalAddress("eth0.10", 7, ipaddress.ip_address("203.0.113.5"), vlan=True)


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        ([LO, LO6], LO.ip),
        ([LO, SELF4], SELF4.ip),
        ([SELF4, LINK6], LINK6.ip),
        ([LINK6, VLAN], VLAN.ip),
        ([VLAN, ULA], ULA.ip),
        ([ULA, GLOBAL6], GLOBAL6.ip),
        ([GLOBAL6, PRIV], PRIV.ip),
        ([PRIV, GLOBAL4], GLOBAL4.ip),
        ([PRIV_B, PRIV], PRIV.ip),  # same rank: lower ifIndex
        ([], None),
    ],
)
def test_ranking(addresses: list[LocalAddress], expected: object) -> None:
    assert select_agent_address(addresses) == expected
    assert select_agent_address(list(reversed(addresses))) == expected


def test_agent_ip_wins_even_when_not_local() -> None:
    assert select_agent_address([GLOBAL4], agent_ip="fd00:252::1") == ipaddress.ip_address("fd00:252::1")


def test_agent_dev_raises_its_address() -> None:
    assert select_agent_address([GLOBAL4, PRIV_B], agent_dev="eth1") == PRIV_B.ip


def test_agent_cidr_raises_and_bang_excludes() -> None:
    inc = AgentCidr(ipaddress.ip_network("192.168.0.0/16"), exclude=False)
    exc = AgentCidr(ipaddress.ip_network("198.51.100.0/24"), exclude=True)
    assert select_agent_address([GLOBAL4, PRIV_B], cidrs=[inc]) == PRIV_B.ip
    assert select_agent_address([GLOBAL4, PRIV], cidrs=[exc]) == PRIV.ip


def test_live_machine_has_loopback() -> None:
    live = local_addresses()
    assert any(a.ip.is_loopback for a in live)
    assert select_agent_address(live) is not None


def test_live_addresses_are_the_ones_iproute2_lists() -> None:
    """The RTM_GETADDR dump against ``ip -j address``: same interfaces, indexes and addresses."""
    import json
    import subprocess

    shown = json.loads(subprocess.run(["ip", "-j", "address"], capture_output=True, text=True, check=True).stdout)
    expected = sorted(
        (link["ifname"], link["ifindex"], str(ipaddress.ip_address(a["local"])))
        for link in shown
        for a in link.get("addr_info", [])
        if a.get("family") in ("inet", "inet6")
    )
    assert sorted((a.ifname, a.ifindex, str(a.ip)) for a in local_addresses()) == expected
