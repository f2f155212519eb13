"""Fuzz what the agent reads from a config file and from DNS-SD TXT records.

Two seeded fuzzers, each over ``--count`` inputs:

* config: one key of every block the parser knows (and of the blocks it refuses) set to a
  generated value, plus whole real configs (tests/fixtures/hsflowd-conf) with bytes and words
  mutated.  Every input must give Settings or a ConfigError.  Settings must then print
  (``describe()``), parse back from that print to equal Settings, and render hsflowd.auto.
* TXT: DNS-SD TXT strings ``key=value`` of every TXT key (and random keys) with generated
  values.  ``parse_txt`` must return (problems are expected; exceptions are not), and the
  overrides must go into Settings, print and render as above.

Values are boundary numbers (2**32, 2**63, 400 zeros, 5,000 digits, one megabyte of digits now
and then), number spellings (hex, octal, suffixes, signs, fractions), regex bombs (deep
parentheses, huge repeats), quotes, separators, non-ASCII, random text and mutations of valid
values.  Anything but ConfigError is a bug: the first few are printed with their input.

    nice -n 19 .venv/bin/python bench/fuzz_config.py --count 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # modules/ sits beside hsflowd_py/

from hsflowd_py.autofile import Effective, render
from hsflowd_py.config import ConfigError, Settings, parse_config
from hsflowd_py.config.parser import UNSUPPORTED_BLOCKS, UNSUPPORTED_LEGACY_KEYS
from hsflowd_py.config.schema import Block, Option, config_fields
from modules.dnssd.txt import TXT_KEYS, parse_txt

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hsflowd-conf"
COLLECTOR = "collector { ip = 127.0.0.1 }"
NEEDS = {"pcap": "dev = eth0", "collector": "ip = 127.0.0.1"}
MEGABYTE_EVERY = 20_000

BOUNDARY_NUMBERS = [
    "0", "1", "255", "256", "257", "65535", "65536", "199999", "200000", "10000000", "10000001",
    "2147483647", "2147483648", "4294967295", "4294967296", "4294967297", "9223372036854775807",
    "9223372036854775808", "18446744073709551616", "1" + "0" * 400, "9" * 4301, "9" * 5000,
    "0x", "0x0", "0xFFFFFFFF", "0x100000000", "0xG", "00", "010", "08", "0777", "-1", "+1", "-0",
    "1.5", "1.0", "0.1K", "2.5G", "1e9", "1E400", "nan", "inf", "-inf", "1_000", "\uff11\uff12",
    "4G", "5G", "4294967296G", "1T", "1P", "10P", "1k", "1x", "1KB", "1-", "-", "1G-", "1G-2G",
    "2G-1G", "1G-2G-3G", "0-0", "9223372036854775807-", "9223372036854775808-",
]  # fmt: skip
WORDS = [
    "on", "off", "ON", "yes", "no", "true", "in", "out", "both", "auto", "ebpf", "cbpf",
    "127.0.0.1", "::1", "[::1]", "fd00::1", "10.0.0.256", "host.example", "a..b", "-a.b", "x" * 64,
    "10.0.0.0/8", "!10.0.0.0/8", "10.0.0.0/33", "!", "!!10.0.0.0/8", "eth0", "eth 0", "eth/0",
    "a" * 15, "a" * 16, "6f1e4d0a-3c39-4e53-9d1a-0c5e0d3c8a11", "00000000-0000-0000-0000-000000000000",
    ".example.com", "example.com.", ".", "..", "http", "app.myapp", "10G", ".x", "é", "\u202e",
    "\x00", "\x7f", '"', '""', "{", "}", "=", ";", "#", "a{4294967296}", "a{1,4294967296}",
    "(" * 1000 + ")" * 1000, "(" * 127 + ")" * 127, "[" * 300, "(?P<a>", "(?<=a+)b", "\\", "a**",
    "((a+)+)+$", "(?i)" * 50, "x{99999}{99999}", "%s%n", "../../etc/passwd",
]  # fmt: skip
ALPHABET = "0123456789abcdefxKMGTP.-+!/:[]{}()\"'=; \t\n#\\é\x00"


def value(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(BOUNDARY_NUMBERS)
    if pick < 0.55:
        return rng.choice(WORDS)
    if pick < 0.7:
        return mutate(rng, rng.choice(BOUNDARY_NUMBERS + WORDS))
    if pick < 0.85:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 40)))
        return rng.choice(["", "0", "0x"]) + digits + rng.choice(["", "", "K", "M", "G", "T", "P", "k", "x"])
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 300)))


def mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        at = rng.randrange(len(chars) + 1)
        if op == 0:
            chars.insert(at, rng.choice(ALPHABET))
        elif op == 1 and chars:
            del chars[min(at, len(chars) - 1)]
        elif op == 2 and chars:
            chars[min(at, len(chars) - 1)] = rng.choice(ALPHABET)
        else:
            chars[at:at] = list(rng.choice(BOUNDARY_NUMBERS + WORDS))[:50]
    return "".join(chars)


def quoted(text: str) -> str:
    """As it would be written in a file: quoted so separators stay inside (a quote cannot)."""
    return '"' + text.replace('"', "") + '"'


def keys() -> list[tuple[str | None, str]]:
    """(block or None for sflow {}, key) for every key the parser reads, and for refused ones."""
    found: list[tuple[str | None, str]] = []

    def walk(cls: type, block: str | None) -> None:
        for _, spec in config_fields(cls):
            if isinstance(spec, Block):
                walk(spec.cls, spec.key)
            elif isinstance(spec, Option):
                for spelling in (spec.key, *spec.aliases):
                    found.append((block, spelling + (".{suffix}" if spec.suffix else "")))

    walk(Settings, None)
    found += [(None, key) for key in UNSUPPORTED_LEGACY_KEYS] + [("collector", "namespace"), ("pcap", "vport")]
    return found


def config_inputs(rng: random.Random, count: int) -> Iterator[str]:
    table = keys()
    corpus = [p.read_text() for p in sorted(CORPUS.glob("*.conf"))]
    for i in range(count):
        if i % MEGABYTE_EVERY == 0:
            yield f"sflow {{ {COLLECTOR} checkAdaptors = {'1' * 1_000_000}G }}"
            continue
        if rng.random() < 0.15:
            yield mutate_config(rng, rng.choice(corpus))
            continue
        block, key = rng.choice(table)
        key = key.replace("{suffix}", value(rng) if rng.random() < 0.5 else rng.choice(["10G", "http", "1G"]))
        line = f"{quoted(key) if rng.random() < 0.1 else key} = {quoted(value(rng))}"
        if block is None:
            yield f"sflow {{ {COLLECTOR} {line} }}"
        elif block in UNSUPPORTED_BLOCKS:
            yield f"sflow {{ {COLLECTOR} {block} {{ {line} }} }}"
        else:
            yield f"sflow {{ {COLLECTOR} {block} {{ {NEEDS.get(block, '')} {line} }} }}"


def mutate_config(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    for _ in range(rng.randrange(1, 6)):
        at = rng.randrange(len(words))
        if rng.random() < 0.5:
            words[at] = value(rng)
        else:
            words[at] = mutate(rng, words[at])
    return " ".join(words)


def txt_inputs(rng: random.Random, count: int) -> Iterator[list[bytes]]:
    txt_keys = [*TXT_KEYS, "sampling.10G", "sampling.http", "polling.http", "sampling.bps_ratio", "txtvers"]
    for i in range(count):
        if i % MEGABYTE_EVERY == 0:
            yield [b"sampling=" + b"9" * 1_000_000 + b"G"]
            continue
        key = rng.choice(txt_keys) if rng.random() < 0.9 else value(rng)
        text = f"{key}={value(rng)}"
        if rng.random() < 0.05:
            yield [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 255)))]
        else:
            yield [text.encode("utf-8", "surrogatepass")[:255], b"polling=7"]


def check_settings(settings: Settings) -> None:
    """Print, parse back (must be equal) and render hsflowd.auto: nothing may raise."""
    text = "\n".join(settings.describe())
    again = parse_config(text, settings.source)
    if dataclasses.replace(again, warnings=settings.warnings) != settings:
        raise AssertionError(f"printed settings parse back different:\n{text}")
    render(
        Effective(
            hostname="h",
            sampling=settings.sampling,
            header_bytes=settings.header_bytes,
            datagram_bytes=settings.datagram_bytes,
            polling=settings.polling,
            collectors=tuple((c.ip, c.udpport) for c in settings.collectors),
            agent_ip=settings.agent_ip or "0.0.0.0",
            agent_dev=settings.agent_dev,
            application_sampling=tuple(settings.sampling_by_application.items()),
            application_polling=tuple(settings.polling_by_application.items()),
        ),
        1,
    )


def one_config(text: str) -> str:
    try:
        settings = parse_config(text, "fuzz.conf", skip_unsupported=len(text) % 2 == 0)
    except ConfigError:
        return "refused"
    check_settings(settings)
    return "accepted"


BASE = parse_config(f"sflow {{ {COLLECTOR} dns-sd {{ }} }}")


def one_txt(strings: list[bytes]) -> str:
    txt = parse_txt(strings)
    overrides: dict[str, Any] = dict(txt.overrides)
    check_settings(dataclasses.replace(BASE, **overrides))
    return "with problems" if txt.problems else "applied"


def run(name: str, inputs: Iterator[Any], handle: Callable[[Any], str], shown: int = 5) -> int:
    outcomes: dict[str, int] = {}
    bugs = 0
    start = time.perf_counter()
    for item in inputs:
        try:
            outcome = handle(item)
        except Exception:  # counting exactly these is the point
            bugs += 1
            outcome = "UNEXPECTED EXCEPTION"
            if bugs <= shown:
                print(f"--- {name} input {item!r:.300}", file=sys.stderr)
                traceback.print_exc()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    elapsed = time.perf_counter() - start
    total = sum(outcomes.values())
    detail = ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))
    rate = total / elapsed
    print(f"{name}: {total:,} inputs in {elapsed:.0f} s ({rate:,.0f}/s): {detail}; unexpected exceptions: {bugs}")
    return bugs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100_000, help="inputs per fuzzer (default %(default)s)")
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args()
    sys.setrecursionlimit(1000)  # the interpreter's default, whatever the caller set
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = random.Random(args.seed)
    bugs = run("config values", config_inputs(rng, args.count), one_config)
    bugs += run("DNS-SD TXT values", txt_inputs(rng, args.count), one_txt)
    end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS {rss / 1024:.0f} MB at start, {end / 1024:.0f} MB at end")
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
