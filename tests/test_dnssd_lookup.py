"""DNS-SD look-ups against a real dnsmasq on loopback: answers, empty answers and failures told apart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnsmasq import Dnsmasq, Zone, available

from hsflowd_py.modules.dnssd.lookup import Found, LookupFailed, lookup, make_resolver
from hsflowd_py.modules.dnssd.settings import DnsSdSettings

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's dnsmasq")

ZONE = Zone(
    srv=[
        ("a.example.test", 6343),
        ("six.example.test", 6344),
        ("both.example.test", 6345),
        ("nowhere.example.test", 6346),
        ("a.example.test", 0),
        ("", 0),  # target "." (RFC 2782: not available there)
    ],
    txt=["txtvers=1", "sampling=10", "polling=5"],
    hosts={
        "a.example.test": ["127.0.0.1", "30"],  # its own TTL, under the local 60
        "six.example.test": ["::1"],
        "both.example.test": ["127.0.0.2", "::2"],
    },
)
EMPTY = Zone(name="empty.test", txt=["sampling=3"])


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dnsmasq, Dnsmasq]]:
    full = Dnsmasq(tmp_path_factory.mktemp("dnsmasq-full"), ttl=60)
    txt_only = Dnsmasq(tmp_path_factory.mktemp("dnsmasq-txt"), ttl=15)
    full.start(ZONE)
    txt_only.start(EMPTY)
    yield full, txt_only
    full.stop()
    txt_only.stop()


def run(server: Dnsmasq, domain: str, resolv_conf: str = "/etc/resolv.conf") -> Found:
    config = DnsSdSettings(domain=domain, server="127.0.0.1", port=server.port)
    return asyncio.run(lookup(make_resolver(config, resolv_conf), domain))


def test_srv_targets_become_collectors_txt_and_smallest_ttl_come_back(servers: tuple[Dnsmasq, Dnsmasq]) -> None:
    found = run(servers[0], ".example.test")
    assert found.collectors == (("127.0.0.1", 6343), ("127.0.0.2", 6345), ("::1", 6344))
    assert found.txt == (b"txtvers=1", b"sampling=10", b"polling=5")
    assert found.ttl == 30
    assert sorted(found.skipped) == ["a.example.test:0: port 0", "nowhere.example.test:6346: no IPv4 or IPv6 address"]


def test_no_srv_record_is_an_answer_with_no_collectors(servers: tuple[Dnsmasq, Dnsmasq]) -> None:
    assert run(servers[0], ".nothing.example.test") == Found(collectors=(), txt=(), ttl=None)
    found = run(servers[1], ".empty.test")
    assert found == Found(collectors=(), txt=(b"sampling=3",), ttl=15)


def test_a_refusing_server_is_a_failure_not_an_empty_answer(servers: tuple[Dnsmasq, Dnsmasq]) -> None:
    with pytest.raises(LookupFailed, match="REFUSED"):
        run(servers[0], ".elsewhere.test")


def test_empty_domain_is_completed_by_the_resolv_conf_search_list(
    servers: tuple[Dnsmasq, Dnsmasq], tmp_path: Path
) -> None:
    # dnspython counts labels for ndots: with ndots 3 the search list is tried before the bare name
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.53\nsearch example.test\noptions ndots:3\n")
    found = run(servers[0], "", str(conf))
    assert ("127.0.0.1", 6343) in found.collectors


def test_without_resolv_conf_a_named_server_still_works_and_none_fails(
    servers: tuple[Dnsmasq, Dnsmasq], tmp_path: Path
) -> None:
    missing = str(tmp_path / "absent.conf")
    assert run(servers[0], ".example.test", missing).collectors
    with pytest.raises(LookupFailed, match="no name server"):
        make_resolver(DnsSdSettings(domain=".example.test"), missing)
