"""Bad configurations: each must raise ConfigError naming the right line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsflowd_py.config import UNSUPPORTED_BLOCKS, ConfigError, load_config, parse_config

C = "collector { ip = 127.0.0.1 }"

# (config text, line, key, fragment of the message)
BAD: list[tuple[str, int, str | None, str]] = [
    ("", 1, None, "must start with 'sflow {'"),
    ("# nothing but a comment\n", 1, None, "must start with 'sflow {'"),
    ("\n\npolling = 30\n", 3, "polling", "must start with 'sflow {'"),
    ("{ }", 1, "{", "must start with 'sflow {'"),
    ("sflow polling = 30", 1, "sflow", "expected '{' after it, found 'polling'"),
    ("sflow", 1, "sflow", "found end of file"),
    ("sflow { " + C + " }\n}\n", 2, "}", "after the closing brace"),
    ("sflow { " + C + " }\nsflow { }\n", 2, "sflow", "after the closing brace"),
    ("sflow {\n" + C + "\n  polling\n", 3, "polling", "has no value"),
    ("sflow {\n" + C + "\n  polling = }\n", 3, "polling", "has no value"),
    ("sflow {\n" + C + "\n  polling = {\n 30 }\n}", 3, "polling", "found '{'"),
    ("sflow {\n  collector = 1\n}", 2, "collector", "is a block: expected '{' after it, found '1'"),
    ("sflow {\n" + C + "\n  tcp on\n}", 3, "tcp", "is a block"),
    ("sflow {\n" + C + "\n  docker\n", 3, "docker", "found end of file"),
    ("sflow {\n" + C + "\n  { }\n}", 3, None, "unexpected '{'"),
    ("sflow {\n" + C + "\n  samplng = 400\n}", 3, "samplng", "unknown key 'samplng' in block 'sflow'"),
    ("sflow {\n" + C + "\n  sampling.1O@ = 100\n}", 3, "sampling.1O@",
     "(not a link speed such as 100M or 10G; not an application name"),
    ("sflow {\n" + C + "\n  polling.http = soon\n}", 3, "polling.http", "bad value 'soon'"),
    ("sflow {\n" + C + "\n  widget { }\n}", 3, "widget", "unknown key 'widget' in block 'sflow'"),
    ("sflow {\n  collector {\n ip = 1.2.3.4\n port = 6343 } }", 4, "port", "unknown key 'port' in block 'collector'"),
    ("sflow {\n" + C + "\n pcap {\n device = eth0 } }", 4, "device", "in block 'pcap'"),
    ("sflow {\n" + C + "\n tcp { tunel = on } }", 3, "tunel", "in block 'tcp'"),
    ("sflow {\n" + C + "\n docker { markTrafic = on } }", 3, "markTrafic", "in block 'docker'"),
    ("sflow {\n" + C + "\n systemd { drop = on } }", 3, "drop", "in block 'systemd'"),
    ("sflow {\n dns-sd { zone = .x } }", 2, "zone", "in block 'dns-sd'"),
    ("sflow {\n" + C + "\n collector { pcap { dev = eth0 } } }", 3, "pcap", "in block 'collector'"),
    ("sflow {\n" + C + "\n  kvm { }\n}", 3, "kvm", "block 'kvm' is not supported by hsflowd-py"),
    ("sflow {\n" + C + "\n  PSAMPLE { group = 1 }\n}", 3, "PSAMPLE", "not supported by hsflowd-py"),
    ("sflow {\n" + C + "\n  sonic { }\n}", 3, "sonic", "not supported by hsflowd-py"),
    ("sflow {\n" + C + "\n  json { UDPport = 36343 }\n}", 3, "json", "block 'json' is not supported by hsflowd-py"),
    ("sflow {\n collector {\n ip = 10.0.0.1\n namespace = mgmt } }", 4, "namespace",
     "key 'namespace' in block 'collector' is not supported by hsflowd-py"),
    ("sflow {\n" + C + "\n pcap { dev = eth0\n VPORT = on } }", 4, "VPORT", "key 'VPORT' in block 'pcap' is not"),
    ("sflow {\n" + C + "\n docker { }\n docker { }\n}", 4, "docker", "appears twice"),
    ("sflow {\n polling = 30\n}", 1, "collector", "needs 'collector' or 'dns-sd'"),
    ("sflow {\n collector {\n udpport = 6343 }\n}", 2, "ip", "block 'collector' needs 'ip'"),
    ("sflow {\n" + C + "\n pcap { promisc = on }\n}", 3, "dev", "needs 'dev' or 'dev.pattern' or 'speed'"),
    ("sflow {\n" + C + "\n headerBytes = 257\n}", 3, "headerBytes", "between 0 and 256"),
    ("sflow {\n" + C + "\n headerBytes = 257\n}", 3, "headerBytes", "between 0 and 256"),
    ("sflow {\n" + C + "\n datagramBytes = 199\n}", 3, "datagramBytes", "between 200 and 8192"),
    ("sflow {\n" + C + "\n datagramBytes = 9K\n}", 3, "datagramBytes", "between 200 and 8192"),
    ("sflow {\n" + C + "\n polling = -5\n}", 3, "polling", "not a number"),
    ("sflow {\n" + C + "\n polling = often\n}", 3, "polling", "bad value 'often' for key 'polling'"),
    ("sflow {\n" + C + "\n sampling = 10000001\n}", 3, "sampling", "between 0 and 10000000"),
    ("sflow {\n" + C + "\n sampling.10G = 20M\n}", 3, "sampling.10G", "between 0 and 10000000"),
    ("sflow {\n" + C + "\n sampling.bps_ratio = -1\n}", 3, "sampling.bps_ratio", "not a number"),
    ("sflow {\n collector { ip = 1.2.3.4 udpport = 0 } }", 2, "udpport", "between 1 and 65535"),
    ("sflow {\n collector { ip = 1.2.3.4\n udpport = 70000 } }", 3, "udpport", "between 1 and 65535"),
    ("sflow {\n collector { ip = 1.2.3.999 } }", 2, "ip", "not an IP address or host name"),
    ("sflow {\n" + C + "\n agentIP = 10.0.0.1.5\n}", 3, "agentIP", "not an IP address"),
    ("sflow {\n" + C + "\n agent.cidr = 10.0.0.0/40\n}", 3, "agent.cidr", "CIDR"),
    ("sflow {\n" + C + "\n uuid = 1234\n}", 3, "uuid", "not a UUID"),
    ("sflow {\n" + C + "\n pcap { dev.pattern = \"veth[\" }\n}", 3, "dev.pattern", "regular expression"),
    ("sflow {\n" + C + "\n pcap { speed = 10G-1G }\n}", 3, "speed", "below"),
    ("sflow {\n" + C + "\n pcap { dev = eth0 promisc = maybe }\n}", 3, "promisc", "expected on or off"),
    ("sflow {\n" + C + "\n pcap { dev = eth0 sampler = xdp }\n}", 3, "sampler", "auto, ebpf, cbpf"),
    ("sflow {\n" + C + "\n docker { markTraffic = 2 }\n}", 3, "markTraffic", "expected on or off"),
    ("sflow {\n" + C + "\n pcap { dev = \"eth 0\" }\n}", 3, "dev", "interface name"),
    ("sflow {\n dns-sd { firstQuery = -1 } }", 2, "firstQuery", "between 0 and 3600"),
    ("sflow {\n" + C + "\n user = \"\"\n}", 3, "user", "must not be empty"),
    ("sflow {\n" + C + "\n  x = \"unterminated\n}\n", 3, None, "unterminated double quote"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_config(text: str, line: int, key: str | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/hsflowd.conf")
    err = info.value
    assert (err.source, err.line, err.key) == ("/etc/hsflowd.conf", line, key)
    assert fragment in err.message
    assert str(err) == f"/etc/hsflowd.conf:{line}: {err.message}"
    if key is not None:
        assert repr(key) in err.message


def test_the_table_is_big_enough() -> None:
    assert len(BAD) >= 30


def test_message_format_of_the_brief() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("sflow {\n" * 1 + "\n" * 10 + "  samplng = 400\n}", "/etc/hsflowd.conf")
    assert str(info.value) == "/etc/hsflowd.conf:12: unknown key 'samplng' in block 'sflow'"


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_BLOCKS))
def test_every_unsupported_block_is_named(name: str) -> None:
    with pytest.raises(ConfigError, match=f"block '{name}' is not supported by hsflowd-py"):
        parse_config(f"sflow {{ {name} {{ }} collector {{ ip = 127.0.0.1 }} }}")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.conf"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.source, info.value.line) == (str(path), None)
    assert str(info.value) == f"{path}: cannot read configuration: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(b"sflow { collector { ip = 127.0.0.1 } } # caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hsflowd.conf"
    path.write_text("sflow {\n  collector { ip = 127.0.0.1 }\n  polling = x\n}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:3: bad value 'x' for key 'polling' in block 'sflow'")


def test_config_error_without_location() -> None:
    assert str(ConfigError("plain")) == "plain"
    assert str(ConfigError("msg", source="f")) == "f: msg"
    assert str(ConfigError("msg", source="f", line=3, key="k")) == "f:3: msg"
