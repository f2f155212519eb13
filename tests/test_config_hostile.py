"""Hostile config and DNS-SD TXT values (issue 21): each is bounded at parse time, and nothing but
ConfigError (a file) or a reported problem (a TXT string) comes out, quickly and in one short line."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.cli import main
from hsflowd_py.config import ConfigError, parse_config
from hsflowd_py.config import values as v
from hsflowd_py.modules.dnssd.txt import parse_txt

C = "collector { ip = 127.0.0.1 }"
MEGABYTE = "1" * 1_000_000


def refused(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(f"sflow {{ {C} {body} }}", "f.conf")
    assert len(str(info.value)) < 300, "the error quotes an excerpt, not the value"
    return info.value


@pytest.mark.parametrize(
    "line", ["sampling = 4294967297", "sampling.10G = 4294967297", "pcap { dev = x sampling = 4294967296 }"]
)
def test_a_sampling_rate_beyond_32_bits_is_refused(line: str) -> None:
    assert "must be between 0 and 10000000" in refused(line).message


def test_a_sampling_rate_beyond_32_bits_from_dns_sd_is_not_applied() -> None:
    txt = parse_txt([b"sampling.10G=4294967297", b"sampling=4294967297", b"polling=5"])
    assert dict(txt.overrides) == {"polling": 5}
    assert len(txt.problems) == 2 and all("must be between 0 and 10000000" in p for p in txt.problems)


def test_deeply_nested_parentheses_are_a_config_error() -> None:
    pattern = "(" * 1000 + ")" * 1000
    assert "longer than 255 characters" in refused(f'pcap {{ dev.pattern = "{pattern}" }}').message
    with pytest.raises(ValueError, match="too large or nested too deep"):
        v.parse_regex(pattern)  # the regex check alone, without the length bound in front of it


@pytest.mark.parametrize("pattern", ["a{4294967296}", "a{1,4294967296}", "a{99999999999999999999}"])
def test_a_huge_repeat_is_a_config_error(pattern: str) -> None:
    assert "not a valid regular expression" in refused(f'pcap {{ dev.pattern = "{pattern}" }}').message


@pytest.mark.parametrize(
    "value", [MEGABYTE + "G", MEGABYTE, "9" * 4301, "9" * 5000, "1" + "0" * 400, "1" + "0" * 400 + "K"]
)
def test_huge_numbers_are_refused_at_parse_time(value: str) -> None:
    err = refused(f"checkAdaptors = {value}")
    assert err.key == "checkAdaptors" and ("longer than 255" in err.message or "number too large" in err.message)


def test_four_hundred_zeros_after_a_one_is_refused() -> None:
    assert refused("checkAdaptors = 1" + "0" * 400).key == "checkAdaptors"
    assert "number too large (31 digits)" in refused("checkAdaptors = 1" + "0" * 30).message


@pytest.mark.parametrize("value", ["1" + "0" * 400, "9" * 5000, MEGABYTE + "G", "0x" + "f" * 300])
def test_huge_numbers_from_dns_sd_are_problems(value: str) -> None:
    txt = parse_txt([f"sampling={value}".encode(), b"polling=5"])
    assert dict(txt.overrides) == {"polling": 5}
    assert len(txt.problems) == 1 and len(txt.problems[0]) < 300


def test_a_huge_key_is_quoted_as_an_excerpt() -> None:
    err = refused(MEGABYTE + " = 1")
    assert "(1000000 characters)" in err.message


def test_check_prints_numbers_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{ {C} forgetVMs = 4294967295 dns-sd {{ firstQuery = 1234.5678 }} }}")
    assert main(["-f", str(conf), "--check"]) == 0
    out = capsys.readouterr().out
    assert "forgetVMs = 4294967295" in out and "firstQuery = 1234.5678" in out
    conf.write_text(f"sflow {{ {C} dns-sd {{ firstQuery = 4294967296 }} }}")
    assert main(["-f", str(conf), "--check"]) == 1
    assert "must be a number of seconds between 0 and 3600" in capsys.readouterr().err


def test_a_file_beyond_a_megabyte_is_refused_unread(tmp_path: Path) -> None:
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{ {C} # {'x' * (1 << 20)}\n}}")
    with pytest.raises(ConfigError, match="larger than 1048576 characters"):
        from hsflowd_py.config import load_config

        load_config(conf)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('0123456789xKMGTP.-+!(){}[]"=; #\nabcé'), max_size=80))
def test_any_value_of_any_key_is_settings_or_config_error(value: str) -> None:
    for key in ("sampling", "polling", "checkAdaptors", "agent.cidr", "uuid", "sampling.10G", "headerBytes"):
        with contextlib.suppress(ConfigError):
            parse_config(f"sflow {{ {C} {key} = \"{value.replace(chr(34), '')}\" }}")
    for key in ("pcap { dev.pattern", "pcap { speed", "dns-sd { firstQuery", "collector { udpport"):
        with contextlib.suppress(ConfigError):
            parse_config(f"sflow {{ {C} {key} = \"{value.replace(chr(34), '')}\" dev = x }} }}")
    parse_txt([f"sampling={value}".encode(), f"agent.cidr={value}".encode(), value.encode()])


@pytest.mark.parametrize("value", ["9" * 5000, "1" + "0" * 400, MEGABYTE + "G"])
def test_a_reload_with_a_huge_number_keeps_the_running_settings(tmp_path: Path, value: str) -> None:
    from hsflowd_py.agent import Agent

    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{ {C} polling = 5 }}")
    agent = Agent(parse_config(conf.read_text()), config_path=str(conf))
    conf.write_text(f"sflow {{ {C} polling = {value} }}")
    assert asyncio.run(agent.reload()) is False
    assert agent.settings.polling == 5
    conf.write_text(f"sflow {{ {C} polling = 7 kvm {{ }} }}")
    agent.skip_unsupported = True
    assert asyncio.run(agent.reload()) is True
    assert agent.settings.polling == 7
