"""DNS-SD TXT strings into settings overrides: the file's value parsers, bad strings ignored one by one."""

from __future__ import annotations

import ipaddress

import pytest

from hsflowd_py.config import AgentCidr
from hsflowd_py.modules.dnssd.txt import parse_txt


def overrides(*strings: str) -> dict:
    return dict(parse_txt(s.encode() for s in strings).overrides)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sampling=10", {"sampling": 10}),
        ("SAMPLING=2K", {"sampling": 2000}),
        ("polling=20", {"polling": 20}),
        ("polling=0", {"polling": 0}),
        ("headerBytes=64", {"header_bytes": 64}),
        ("agentIP=FD00::01", {"agent_ip": "fd00::1"}),
        ("agent=eth1", {"agent_dev": "eth1"}),
        ("agent.cidr=10.1.2.3/8", {"agent_cidrs": (AgentCidr(ipaddress.ip_network("10.0.0.0/8")),)}),
        ("sampling.10G=10000", {"sampling_by_speed": {10_000_000_000: 10000}}),
        ("sampling.100M = 100", {"sampling_by_speed": {100_000_000: 100}}),
        ('sampling="5"', {"sampling": 5}),
        ("sampling.http=50", {"sampling_by_application": {"http": 50}}),
        ("polling.app.myapp=20", {"polling_by_application": {"app.myapp": 20}}),
        ("txtvers=1", {}),
    ],
)
def test_each_key_parses_like_the_file(text: str, expected: dict) -> None:
    txt = parse_txt([text.encode()])
    assert dict(txt.overrides) == expected
    assert txt.problems == ()


def test_families_and_repeats_collect_last_plain_value_wins() -> None:
    got = overrides(
        "txtvers=1",
        "sampling=100",
        "sampling.1G=1000",
        "sampling.10G=10000",
        "agent.cidr=10.0.0.0/8",
        "agent.cidr=!192.168.0.0/16",
        "sampling=200",
    )
    assert got == {
        "sampling": 200,
        "sampling_by_speed": {1_000_000_000: 1000, 10_000_000_000: 10000},
        "agent_cidrs": (
            AgentCidr(ipaddress.ip_network("10.0.0.0/8")),
            AgentCidr(ipaddress.ip_network("192.168.0.0/16"), exclude=True),
        ),
    }


def test_overrides_are_sorted_so_record_order_does_not_look_like_a_change() -> None:
    a = parse_txt([b"polling=5", b"sampling=10"])
    b = parse_txt([b"sampling=10", b"polling=5"])
    assert a == b
    assert [name for name, _ in a.overrides] == ["polling", "sampling"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"sampling", "not key=value"),
        (b"=10", "not key=value"),
        (b"sampling=10000001", "must be between 0 and 10000000"),
        (b"sampling=ten", "not a number"),
        (b"polling=-1", "not a number"),
        (b"headerBytes=lots", "not a number"),
        (b"agentIP=10.0.0.300", "not an IP address"),
        (b"agent=eth 0", "not a network interface name"),
        (b"agent.cidr=10.0.0.0/40", "not a CIDR prefix"),
        (b"sampling.@=10", "not a link speed such as 100M or 10G; not an application name"),
        (b"polling.http=soon", "not a number"),
        (b"polling.=20", "not an application name"),
        (b"datagramBytes=9000", "not a DNS-SD setting"),
        (b"collector=10.0.0.1", "not a DNS-SD setting"),
        (b"sampling=\xff", "not UTF-8"),
    ],
)
def test_a_bad_string_is_reported_and_the_others_still_apply(raw: bytes, reason: str) -> None:
    txt = parse_txt([b"polling=7", raw, b"headerBytes=100"])
    assert dict(txt.overrides) == {"polling": 7, "header_bytes": 100}
    assert len(txt.problems) == 1
    assert reason in txt.problems[0] and txt.problems[0].endswith("ignored")


def test_no_strings_no_overrides() -> None:
    assert parse_txt([]).overrides == ()


def test_header_bytes_above_256_is_clamped_as_the_established_agent_does() -> None:
    assert dict(parse_txt([b"headerBytes=300"]).overrides) == {"header_bytes": 256}
    assert dict(parse_txt([b"headerBytes=0x200"]).overrides) == {"header_bytes": 256}
    assert dict(parse_txt([b"headerBytes=64"]).overrides) == {"header_bytes": 64}
