"""The established agent's files work here: its synonyms, legacy keys, number forms and ranges.

Ground truth is its parser (src/Linux/hsflowconfig.c and hsflowtokens.h in sflow/host-sflow):
the ranges below are the ``expectInteger32(..., min, max)`` arguments there, and the numbers are
read as its ``strtol(text, NULL, 0)`` reads them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from test_pcap_interfaces import iface

from hsflowd_py.cli import main
from hsflowd_py.config import ConfigError, Settings, parse_config
from hsflowd_py.config.parser import UNSUPPORTED_BLOCKS
from hsflowd_py.modules.dnssd.settings import DnsSdSettings
from hsflowd_py.modules.pcap.interfaces import choose

C = "collector { ip = 127.0.0.1 }"


def sflow(body: str, **kw: bool) -> Settings:
    return parse_config(f"sflow {{ {C} {body} }}", **kw)


def fields(settings: Settings) -> dict[str, object]:
    return {k: v for k, v in vars(settings).items() if k not in ("source", "warnings")}


@pytest.mark.parametrize(
    ("legacy", "modern"),
    [
        ("packetSamplingRate = 77", "sampling = 77"),
        ("PACKETSAMPLINGRATE = 77", "sampling = 77"),
        ("counterPollingInterval = 12", "polling = 12"),
        ("collector { IP = 10.0.0.9 UDPPort = 6344 }", "collector { ip = 10.0.0.9 udpport = 6344 }"),
        ("DNS-SD { }", "dns-sd { }"),
        ("DNSSD = on", "dns-sd { }"),
        ("DNSSD = on DNSSD_domain = .example.com", "dns-sd { domain = .example.com }"),
        ("DNSSD_domain = .example.com dns-sd { }", "dns-sd { domain = .example.com }"),
        ("dns-sd { DNSSD_domain = .example.com }", "dns-sd { domain = .example.com }"),
        ("dns-sd { } DNSSD = off", ""),
        ("DNSSD = off", ""),
        ("DNSSD_domain = .example.com", ""),  # a domain alone does not turn DNS-SD on, there either
    ],
)
def test_legacy_spellings_mean_the_same(legacy: str, modern: str) -> None:
    assert fields(sflow(legacy)) == fields(sflow(modern))


def test_dnssd_on_alone_stands_for_a_collector() -> None:
    assert parse_config("sflow { DNSSD = on }").dns_sd == DnsSdSettings()
    with pytest.raises(ConfigError, match="needs 'collector' or 'dns-sd'"):
        parse_config("sflow { DNSSD = off }")


@pytest.mark.parametrize(
    "line",
    [
        "loopback = on", "loopback = off", "samplingDirection = in", "samplingDirection = OUT",
        "samplingDirection = both", "modules = /usr/lib/hsflowd", "polling.10G = 20", "polling.http = 0",
        "sampling = 0", "sampling.http = 0", "sampling.10G = 0", "pcap { dev = eth0 dynamic = on }",
        "pcap { dev = eth0 sampling = 0 }", "docker { refreshVMs = 60 forgetVMs = 4294967295 }",
        "systemd { cgroup_procs = /sys/fs/cgroup/%s cgroup_acct = /sys/fs/cgroup/%s refreshVMs = 10 }",
    ],
)  # fmt: skip
def test_keys_the_established_agent_reads_are_accepted(line: str) -> None:
    settings = sflow(line)
    assert settings.warnings == ()


def test_checked_legacy_values_are_still_checked() -> None:
    with pytest.raises(ConfigError, match="samplingDirection.*expected one of in, out, both"):
        sflow("samplingDirection = sideways")
    with pytest.raises(ConfigError, match="loopback.*on or off"):
        sflow("loopback = 2")


@pytest.mark.parametrize(
    ("text", "value"),
    [("400", 400), ("0x190", 400), ("0X190", 400), ("0620", 400), ("1K", 1000), ("0x1K", 1000), ("010K", 8000)],
)
def test_numbers_read_as_strtol_base_0_reads_them(text: str, value: int) -> None:
    assert sflow(f"sampling = {text}").sampling == value


# (block, key, the established agent's minimum, maximum)
RANGES = [
    (None, "sampling", 0, 10_000_000),
    (None, "packetSamplingRate", 0, 10_000_000),
    (None, "sampling.10G", 0, 10_000_000),
    (None, "sampling.http", 0, 10_000_000),
    (None, "sampling.bps_ratio", 0, 10_000_000),
    (None, "polling", 0, 300),
    (None, "counterPollingInterval", 0, 300),
    (None, "polling.http", 0, 300),
    (None, "subAgentId", 0, 199_999),
    (None, "headerBytes", 0, 256),
    (None, "datagramBytes", 200, 8192),
    (None, "refreshAdaptors", 60, 3600),
    (None, "checkAdaptors", 1, 3600),
    (None, "refreshVMs", 60, 3600),
    (None, "forgetVMs", 60, 0xFFFFFFFF),
    ("collector", "udpport", 1, 65535),
    ("pcap", "sampling", 0, 10_000_000),
    ("docker", "refreshVMs", 60, 3600),
    ("docker", "forgetVMs", 60, 0xFFFFFFFF),
    ("systemd", "refreshVMs", 10, 3600),
]


def in_block(block: str | None, line: str) -> str:
    if block is None:
        return line
    if block == "collector":
        return f"collector {{ ip = 10.0.0.1 {line} }}"
    return f"{block} {{ {'dev = eth0' if block == 'pcap' else ''} {line} }}"


@pytest.mark.parametrize(("block", "key", "low", "high"), RANGES, ids=[f"{b}.{k}" for b, k, _, _ in RANGES])
def test_ranges_are_the_established_agents(block: str | None, key: str, low: int, high: int) -> None:
    for ok in (low, high):
        sflow(in_block(block, f"{key} = {ok}"))
    for bad in (low - 1, high + 1):
        if bad < 0:
            continue  # no sign: "-1" is not a number there (it must start with a digit)
        with pytest.raises(ConfigError, match=f"must be between {low} and {high}"):
            sflow(in_block(block, f"{key} = {bad}"))


def test_sampling_zero_and_dynamic_pcap_sample_nothing() -> None:
    links = [iface("eth0", 2), iface("eth1", 3)]
    assert choose(links, sflow("pcap { dev = eth0 sampling = 0 } pcap { dev = eth1 }")).keys() == {3}
    assert choose(links, sflow("sampling.10G = 0 pcap { speed = 1G- }")) == {}
    assert choose(links, sflow("pcap { dev = eth0 dynamic = on } pcap { dev = eth1 }")).keys() == {3}
    assert [t.sampling_rate for t in choose(links, sflow("pcap { speed = 1G- }")).values()] == [10000, 10000]


@pytest.mark.parametrize("block", sorted(UNSUPPORTED_BLOCKS))
def test_each_unsupported_block_is_refused_by_name_or_skipped(block: str) -> None:
    text = f"sflow {{\n {C}\n {block} {{ a = 1 port {{ dev = x }} }}\n sampling = 7\n}}"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.conf")
    assert (info.value.line, info.value.key) == (3, block)
    assert f"block {block!r} is not supported by hsflowd-py" in info.value.message
    assert "--skip-unsupported" in info.value.message
    settings = parse_config(text, "f.conf", skip_unsupported=True)
    assert settings.sampling == 7
    assert settings.warnings == (f"f.conf:3: block {block!r} is not supported by hsflowd-py; skipped",)


@pytest.mark.parametrize(
    ("line", "module"),
    [
        ("jsonPort = 36343", "json"), ("jsonFIFO = /tmp/f", "json"), ("ulogGroup = 1", "ulog"),
        ("ulogProbability = 0.01", "ulog"), ("nflogGroup = 5", "nflog"), ("nflogProbability = 0.01", "nflog"),
        ("xen.update.dominfo = on", "xen"), ("xen.dsk = off", "xen"),
    ],
)  # fmt: skip
def test_legacy_keys_of_unsupported_modules_are_refused_by_their_module(line: str, module: str) -> None:
    with pytest.raises(ConfigError, match=f"configures block {module!r}, which is not supported"):
        sflow(line)
    assert len(sflow(line, skip_unsupported=True).warnings) == 1


def test_unsupported_keys_in_supported_blocks_can_be_skipped() -> None:
    body = "collector { ip = 10.0.0.2 namespace = blue } pcap { dev = eth0 vport = on }"
    settings = sflow(body, skip_unsupported=True)
    assert [w.split(": ", 1)[1] for w in settings.warnings] == [
        "key 'namespace' in block 'collector' is not supported by hsflowd-py; skipped",
        "key 'vport' in block 'pcap' is not supported by hsflowd-py; skipped",
    ]
    assert settings.collectors[-1].ip == "10.0.0.2"


def test_check_prints_warnings_and_the_uuid_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{\n {C}\n kvm {{ }}\n}}\n")
    assert main(["-f", str(conf), "--check", "--skip-unsupported", "-m", "3d1219c7c4c5404aaa1f6d2a48adfda4"]) == 0
    out = capsys.readouterr().out
    assert f"# warning: {conf}:3: block 'kvm' is not supported by hsflowd-py; skipped" in out
    if not Path("/sys/class/dmi/id/product_uuid").exists():
        assert re.search(r"^# host UUID: \S+ \(from -m, the established agent's FNV-1a derivation\)$", out, re.M)
    assert main(["-f", str(conf), "--check", "--skip-unsupported", "--machine-id-uuid", "hmac"]) == 0
    if not Path("/sys/class/dmi/id/product_uuid").exists():
        assert "HMAC-SHA256 app-specific ID)" in capsys.readouterr().out


def test_bad_machine_id_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{ {C} }}")
    assert main(["-f", str(conf), "--check", "-m", "not-hex"]) == 1
    assert "-m not-hex: not a machine-id" in capsys.readouterr().err


def test_dash_l_is_accepted_and_dash_d_logs_to_a_file(tmp_path: Path) -> None:
    from hsflowd_py.cli import parse_args, setup_logging

    args = parse_args(["-l", "/usr/lib/hsflowd", "-D", str(tmp_path / "log"), "-L", "0x1000"])
    assert (args.modules_dir, args.logbytes) == ("/usr/lib/hsflowd", 4096)
    setup_logging(1, args.logfile, args.logbytes)
    try:
        logging.getLogger("hsflowd_py.test").info("into the file")
    finally:
        logging.getLogger().handlers[0].close()
        logging.basicConfig(force=True)
    assert "into the file" in (tmp_path / "log").read_text()


def test_posix_bracket_classes_in_patterns_mean_what_regcomp_makes_of_them() -> None:
    links = [iface("eth0", 2), iface("eth12", 3), iface("ethx", 4), iface("em 1", 5)]
    chosen = choose(links, sflow('pcap { dev.pattern = "^eth[[:digit:]]+$" } pcap { dev.pattern = "[[:space:]]" }'))
    assert sorted(t.name for t in chosen.values()) == ["em 1", "eth0", "eth12"]


@pytest.mark.parametrize(
    "text",
    [
        "00112233-4455-6677-8899-aabbccddeeff",
        "00112233445566778899aabbccddeeff",
        "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
    ],
)
def test_uuid_spellings_of_the_established_agent(text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert str(sflow(f"uuid = {text}").uuid) == "00112233-4455-6677-8899-aabbccddeeff"
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{ {C} }}")
    assert main(["-f", str(conf), "--check", "-u", text]) == 0
    assert "# host UUID: 00112233-4455-6677-8899-aabbccddeeff (from configured" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "warnings"),
    [
        (f"sflow {{\n  {C}\n", ["f.conf:1: block 'sflow' is never closed"]),
        (f"sflow {{\n{C}\n  pcap {{\n dev = eth0\n}}\n", ["f.conf:1: block 'sflow' is never closed"]),
        ("sflow {\n  collector {\n ip = 1.2.3.4\n", [
            "f.conf:2: block 'collector' is never closed", "f.conf:1: block 'sflow' is never closed"]),
    ],
)
def test_a_missing_closing_brace_is_tolerated_with_a_warning_as_there(text: str, warnings: list[str]) -> None:
    settings = parse_config(text, "f.conf")
    assert [w.partition(";")[0] for w in settings.warnings] == warnings
    assert settings.collectors
