"""Value types: each parser on good and bad text, and printing back."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsflowd_py.config import values as v
from hsflowd_py.config.values import AgentCidr

GOOD: list[tuple[Callable[[str], Any], str, Any]] = [
    (v.parse_int, "0", 0),
    (v.parse_int, "400", 400),
    (v.parse_int, "10K", 10_000),
    (v.parse_int, "10k", 10_000),
    (v.parse_int, "2M", 2_000_000),
    (v.parse_int, "1G", 1_000_000_000),
    (v.parse_int, "1.5K", 1500),
    (v.parse_int, "0x10", 16),
    (v.parse_int, "010", 8),
    (v.parse_int, "0x1G", 10**9),
    (v.parse_int, "007", 7),
    (v.parse_bool, "on", True),
    (v.parse_bool, "OFF", False),
    (v.parse_bool, "yes", True),
    (v.parse_bool, "false", False),
    (v.parse_speed, "100M", 100_000_000),
    (v.parse_speed, "1G", 1_000_000_000),
    (v.parse_speed, "10G", 10_000_000_000),
    (v.parse_speed, "25g", 25_000_000_000),
    (v.parse_speed, "2.5G", 2_500_000_000),
    (v.parse_speed, "1T", 10**12),
    (v.parse_range, "1G-10G", (10**9, 10**10)),
    (v.parse_range, "1G-", (10**9, None)),
    (v.parse_range, "100M", (10**8, 10**8)),
    (v.parse_range, "0-1T", (0, 10**12)),
    (v.parse_ip, "10.0.0.1", "10.0.0.1"),
    (v.parse_ip, "FD00:252::01", "fd00:252::1"),
    (v.parse_host, "collector.example.com", "collector.example.com"),
    (v.parse_host, "localhost", "localhost"),
    (v.parse_host, "[2001:db8::1]", "2001:db8::1"),
    (v.parse_host, "192.0.2.7", "192.0.2.7"),
    (v.parse_cidr, "10.0.0.0/8", AgentCidr(ipaddress.ip_network("10.0.0.0/8"))),
    (v.parse_cidr, "!fd00::/8", AgentCidr(ipaddress.ip_network("fd00::/8"), exclude=True)),
    (v.parse_cidr, "10.1.2.3/16", AgentCidr(ipaddress.ip_network("10.1.0.0/16"))),
    (v.parse_uuid, "6f1e4d0a-3c39-4e53-9d1a-0c5e0d3c8a11", uuid.UUID("6f1e4d0a-3c39-4e53-9d1a-0c5e0d3c8a11")),
    (v.parse_regex, "^veth[0-9]+$", "^veth[0-9]+$"),
    (v.parse_ifname, "eth0", "eth0"),
    (v.parse_ifname, "docker_gwbridge", "docker_gwbridge"),
    (v.parse_domain, ".example.com", ".example.com"),
    (v.parse_domain, "example.com", ".example.com"),
    (v.parse_domain, "", ""),
    (v.seconds(60).parse, "0.5", 0.5),
    (v.seconds(60).parse, "30", 30.0),
    (v.choice("auto", "ebpf").parse, "EBPF", "ebpf"),
    (v.integer(0, 256).parse, "256", 256),
    (v.PORT.parse, "65535", 65535),
]

BAD: list[tuple[Callable[[str], Any], str, str]] = [
    (v.parse_int, "", "not a number"),
    (v.parse_int, "ten", "not a number"),
    (v.parse_int, "10T", "K/M/G"),
    (v.parse_int, "10X", "not a number"),
    (v.parse_int, "1.5", "whole"),
    (v.parse_int, "-3", "not a number"),
    (v.parse_int, "+3", "not a number"),
    (v.parse_int, "08", "octal"),
    (v.parse_bool, "maybe", "on or off"),
    (v.parse_bool, "1", "on or off"),
    (v.parse_speed, "0", "not a link speed"),
    (v.parse_speed, "fast", "not a link speed"),
    (v.parse_speed, "-1G", "not a link speed"),
    (v.parse_range, "10G-1G", "below"),
    (v.parse_range, "-1G", "not a number"),
    (v.parse_range, "1G-2G-3G", "not a number"),
    (v.parse_ip, "10.0.0.256", "not an IP"),
    (v.parse_ip, "host.example", "not an IP"),
    (v.parse_host, "10.0.0.300", "host name"),
    (v.parse_host, "bad_host!", "host name"),
    (v.parse_host, "-leading.example", "host name"),
    (v.parse_cidr, "10.0.0.0/33", "CIDR"),
    (v.parse_cidr, "!", "CIDR"),
    (v.parse_uuid, "not-a-uuid", "UUID"),
    (v.parse_regex, "veth[", "regular expression"),
    (v.parse_ifname, "", "interface"),
    (v.parse_ifname, "a-very-long-ifname0", "interface"),
    (v.parse_ifname, "eth 0", "interface"),
    (v.parse_ifname, "eth0:1", "interface"),
    (v.parse_domain, "bad..example", "domain"),
    (v.seconds(60).parse, "-1", "between 0 and 60"),
    (v.seconds(60).parse, "nan", "between 0 and 60"),
    (v.seconds(60).parse, "soon", "seconds"),
    (v.parse_text, "", "empty"),
    (v.choice("auto", "ebpf").parse, "xdp", "auto, ebpf"),
    (v.integer(0, 256).parse, "257", "between 0 and 256"),
    (v.integer(1, 9).parse, "0", "between 1 and 9"),
    (v.PORT.parse, "0", "between 1 and 65535"),
]


@pytest.mark.parametrize(("parse", "text", "expected"), GOOD)
def test_good(parse: Callable[[str], Any], text: str, expected: Any) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("parse", "text", "reason"), BAD)
def test_bad(parse: Callable[[str], Any], text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse(text)


@pytest.mark.parametrize(
    ("bps", "text"),
    [(10**8, "100M"), (10**9, "1G"), (10**10, "10G"), (25 * 10**9, "25G"), (10**11, "100G"),
     (2_500_000_000, "2.5G"), (1500, "1.5K"), (999, "999"), (10**12, "1T")],
)
def test_format_speed(bps: int, text: str) -> None:
    assert v.format_speed(bps) == text


@given(st.integers(min_value=1, max_value=10**15))
def test_speed_round_trips(bps: int) -> None:
    assert v.parse_speed(v.format_speed(bps)) == bps


@pytest.mark.parametrize("text", ["1G-10G", "1G-", "100M", "1.5K-2K"])
def test_range_round_trips(text: str) -> None:
    assert v.format_range(v.parse_range(text)) == text


def test_cidr_prints_its_exclusion() -> None:
    assert str(v.parse_cidr("!10.1.0.0/16")) == "!10.1.0.0/16"
    assert str(v.parse_cidr("10.1.0.0/16")) == "10.1.0.0/16"


def test_codecs_show_what_they_parse() -> None:
    assert v.BOOL.show(v.BOOL.parse("on")) == "on"
    assert v.seconds(60).show(v.seconds(60).parse("30")) == "30"
