"""Good configurations: the reference vectors, the example file and every language feature."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import uuid
from pathlib import Path

import pytest

from hsflowd_py.config import AgentCidr, CollectorSettings, Settings, load_config, parse_config
from hsflowd_py.config.blocks import declared_blocks
from hsflowd_py.config.schema import Block, config_fields
from hsflowd_py.modules.dnssd.settings import DnsSdSettings
from hsflowd_py.modules.docker.settings import DockerSettings
from hsflowd_py.modules.pcap.settings import PcapSettings
from hsflowd_py.modules.systemd.settings import SystemdSettings
from hsflowd_py.modules.tcp.settings import TcpSettings

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors"
EXAMPLE = REPO / "hsflowd.conf.example"
LOOPBACK = "collector { ip = 127.0.0.1 }"


def sflow(body: str) -> Settings:
    return parse_config(f"sflow {{\n{body}\n}}\n")


@pytest.mark.parametrize("name", ["docker-containers", "host-flows", "host-ipv6-agent"])
def test_reference_vectors(name: str) -> None:
    path = VECTORS / f"hsflowd-{name}.conf"
    if not path.exists():
        pytest.skip(f"{path} not present")
    settings = load_config(path)
    assert settings.source == str(path)
    assert (settings.polling, settings.sampling, settings.sampling_bps_ratio, settings.header_bytes) == (2, 10, 0, 128)
    assert settings.collectors == (CollectorSettings("127.0.0.1", 6343),)
    if name == "docker-containers":
        assert settings.docker == DockerSettings()
        assert not settings.packet_sampling_configured()
        assert settings.sub_agent() == 100001
    else:
        assert settings.pcap == (PcapSettings(dev="vec0"),)
        assert settings.tcp == TcpSettings()
        assert settings.sub_agent() == 100000
    assert settings.agent_ip == ("fd00:252::1" if name == "host-ipv6-agent" else None)


def test_defaults() -> None:
    settings = sflow(LOOPBACK)
    assert settings == Settings(collectors=(CollectorSettings("127.0.0.1"),))
    assert (settings.sampling, settings.polling, settings.header_bytes, settings.datagram_bytes) == (400, 30, 128, 1400)
    assert (settings.sub_agent_id, settings.refresh_adaptors, settings.check_adaptors) == (100000, 180, 10)
    assert (settings.refresh_vms, settings.forget_vms, settings.run_as_user, settings.run_as_group) == (
        60, 180, "nobody", None)
    assert settings.sampling_bps_ratio is None
    assert settings.dns_sd is settings.tcp is settings.docker is settings.systemd is None


def test_glued_form_of_the_established_agent() -> None:
    settings = parse_config("sflow{collector{ip=1.2.3.4}pcap{dev=eth0}}")
    assert settings.collectors == (CollectorSettings("1.2.3.4"),)
    assert settings.pcap == (PcapSettings(dev="eth0"),)


def test_semicolons_and_missing_equals() -> None:
    settings = parse_config("sflow { polling 5; sampling=7; collector { ip 10.0.0.1; udpport 9999; } }")
    assert (settings.polling, settings.sampling) == (5, 7)
    assert settings.collectors == (CollectorSettings("10.0.0.1", 9999),)


def test_keywords_are_case_insensitive() -> None:
    settings = parse_config("SFLOW { HEADERBYTES = 64 Sampling.10g = 5000 Collector { IP = 10.0.0.1 UdpPort = 1 } "
                            "Docker { MARKTRAFFIC = ON } }")
    assert settings.header_bytes == 64
    assert settings.sampling_by_speed == {10**10: 5000}
    assert settings.collectors == (CollectorSettings("10.0.0.1", 1),)
    assert settings.docker == DockerSettings(mark_traffic=True)


def test_quotes_and_comments() -> None:
    settings = sflow(f"""
        # a comment line
        {LOOPBACK}  # trailing comment
        pcap {{ dev.pattern = "^(veth|tap)[0-9]{{1,4}}$" }}  # braces inside quotes are not blocks
        docker {{ socket = "/run/user/1000/docker sock" }}
    """)
    assert settings.pcap == (PcapSettings(dev_pattern="^(veth|tap)[0-9]{1,4}$"),)
    assert settings.docker == DockerSettings(socket="/run/user/1000/docker sock")


def test_suffixes() -> None:
    settings = sflow(f"""{LOOPBACK}
        sampling = 1K  datagramBytes = 8K  subAgentId = 100K  refreshAdaptors = 1K
        sampling.100M = 100 sampling.1G = 1000 sampling.2.5G = 2500 sampling.100G = 100K
        pcap {{ speed = 1G- sampling = 2K }}
        pcap {{ speed = 100M-10G }}
    """)
    assert (settings.sampling, settings.datagram_bytes, settings.sub_agent_id) == (1000, 8000, 100_000)
    assert settings.sampling_by_speed == {10**8: 100, 10**9: 1000, 25 * 10**8: 2500, 10**11: 100_000}
    assert settings.pcap == (PcapSettings(speed=(10**9, None), sampling=2000), PcapSettings(speed=(10**8, 10**10)))


def test_application_settings_share_the_sampling_and_polling_families_with_speeds() -> None:
    settings = sflow(f"""{LOOPBACK}
        sampling.10G = 10K  sampling.http = 50  sampling.app.myapp = 100  Sampling.Java = 7
        polling.http = 20  polling.memcache = 0
    """)
    assert settings.sampling_by_speed == {10**10: 10_000}
    assert settings.sampling_by_application == {"http": 50, "app.myapp": 100, "Java": 7}
    assert settings.polling_by_application == {"http": 20, "memcache": 0}


def test_multiple_collectors_including_ipv6_and_host_names() -> None:
    settings = sflow("""
        collector { ip = 10.0.0.30 }
        collector { ip = 2001:DB8::30 udpport = 6344 dev = eth1 }
        collector { ip = collector.example.com }
    """)
    assert settings.collectors == (
        CollectorSettings("10.0.0.30"),
        CollectorSettings("2001:db8::30", 6344, "eth1"),
        CollectorSettings("collector.example.com"),
    )


def test_multiple_pcap_blocks_and_their_options() -> None:
    settings = sflow(f"""{LOOPBACK}
        pcap {{ dev = eth0 promisc = on sampler = ebpf }}
        pcap {{ dev.pattern = veth.* sampling = 10 sampler = CBPF }}
    """)
    assert settings.pcap == (
        PcapSettings(dev="eth0", promisc=True, sampler="ebpf"),
        PcapSettings(dev_pattern="veth.*", sampling=10, sampler="cbpf"),
    )
    assert settings.packet_sampling_configured()
    assert settings.sub_agent() == settings.sub_agent_id


def test_agent_identity() -> None:
    settings = sflow(f"""{LOOPBACK}
        agentIP = 192.0.2.1 agent = eth0 agent.cidr = 10.0.0.0/8 agent.cidr = !10.1.0.0/16
        uuid = 6F1E4D0A-3C39-4E53-9D1A-0C5E0D3C8A11 user = sflow group = sflow
    """)
    assert (settings.agent_ip, settings.agent_dev) == ("192.0.2.1", "eth0")
    assert settings.agent_cidrs == (
        AgentCidr(ipaddress.ip_network("10.0.0.0/8")),
        AgentCidr(ipaddress.ip_network("10.1.0.0/16"), exclude=True),
    )
    assert settings.uuid == uuid.UUID("6f1e4d0a-3c39-4e53-9d1a-0c5e0d3c8a11")
    assert (settings.run_as_user, settings.run_as_group) == ("sflow", "sflow")


def test_dns_sd_replaces_collectors() -> None:
    settings = sflow("dns-sd { domain = .example.com server = 127.0.0.1 port = 5353 firstQuery = 0.5 }")
    assert settings.collectors == ()
    assert settings.dns_sd == DnsSdSettings(".example.com", "127.0.0.1", 5353, 0.5)
    assert sflow("dns-sd { }").dns_sd == DnsSdSettings("")


def test_module_blocks() -> None:
    settings = sflow(f"""{LOOPBACK}
        tcp {{ tunnel = on udp = on dump = off }}
        systemd {{ markTraffic = on dropPriv = off refreshVMs = 20 cgroupRoot = /tmp/cg }}
    """)
    assert settings.tcp == TcpSettings(tunnel=True, udp=True)
    assert settings.systemd == SystemdSettings(True, False, 20, "/tmp/cg")


def test_a_scalar_given_twice_keeps_the_last() -> None:
    assert sflow(f"{LOOPBACK} polling = 10 polling = 20").polling == 20


def test_polling_zero_turns_counters_off() -> None:
    assert sflow(f"{LOOPBACK} polling = 0").polling == 0


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        sflow(LOOPBACK).polling = 1  # type: ignore[misc]


def test_example_file_parses_and_talks_to_loopback() -> None:
    settings = load_config(EXAMPLE)
    assert settings.collectors == (CollectorSettings("127.0.0.1", 6343),)
    assert settings.polling == 2


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    keys = _all_keys(Settings) + [key for block in declared_blocks() for key in [block.key, *_all_keys(block.cls)]]
    missing = [key for key in keys if not re.search(rf"^\s*#?\s*{re.escape(key)}\s*[={{]", text, re.M)]
    assert missing == []


def test_example_file_with_everything_uncommented_parses() -> None:
    text = re.sub(r"^(\s*)#\s+(?=[\w.-]+\s+[={]|\})", r"\1", EXAMPLE.read_text(), flags=re.M)
    settings = parse_config(text)
    assert settings.dns_sd is not None and settings.dns_sd.domain == ".example.com"
    assert settings.pcap[0].dev_pattern == "^veth.*"
    assert settings.sampling_by_speed == {10**10: 10000}
    assert (settings.sampling_by_application, settings.polling_by_application) == ({"http": 50}, {"http": 20})


@pytest.mark.parametrize(
    "body",
    [
        LOOPBACK,
        f"""{LOOPBACK} collector {{ ip = fd00::1 udpport = 9 dev = eth0 }}
            sampling.10G = 5 sampling.2.5G = 7 sampling.http = 9 polling.app.x = 3
            sampling.bps_ratio = 0 agent.cidr = !10.0.0.0/8 agent.cidr = fd00::/8
            uuid = 6f1e4d0a-3c39-4e53-9d1a-0c5e0d3c8a11 group = adm
            pcap {{ dev.pattern = "a b{{2}}#" speed = 1G-10G }} pcap {{ speed = 25G- sampling = 3 }}
            tcp {{ }} docker {{ hostname = on }} systemd {{ refreshVMs = 15 }}""",
        "dns-sd { firstQuery = 0.25 }",
    ],
)
def test_describe_prints_settings_that_parse_back_to_themselves(body: str) -> None:
    settings = sflow(body)
    described = "\n".join(settings.describe())
    assert parse_config(described) == settings
    assert described.startswith("# effective settings from <string>\n")


def _all_keys(cls: type) -> list[str]:
    keys = []
    for _, spec in config_fields(cls):
        keys.append(spec.key)
        if isinstance(spec, Block):
            keys.extend(_all_keys(spec.cls))
    return keys
