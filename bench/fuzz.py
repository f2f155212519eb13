"""Fuzz the two parsers that read bytes from outside: the collector's datagram decoder (with every
output it feeds: text, -g, -j/-J, -l, -t pcap, -T pcapng, also for the part of a malformed datagram
decoded before its fault; and the Prometheus exporter: its decode, which builds only the records it
reads, must reject exactly what the full decode rejects, with the same error, and what it accepts
goes into the exporter's state and a scrape) and the packet walker (``hsflowd_py/packet.py``) with
every user of it: the agent's flow parser (tunnels followed), the GSO offsets, the Prometheus flow
key, under both walker rules.

Seeds: the C agent's captures, the switch/router/discard datagrams of ../shared/vectors/devices
(compact and discard samples) and tests/fixtures/sflowtool-6.11/records.pcap (every record of the
table in every sample kind).

A seeded mutation fuzzer: inputs are the reference captures' datagrams and real packet headers,
mutated by bit flips, byte overwrites with boundary values, truncation, splicing and length-field
corruption, plus purely random bytes. Every input must give a result or a DecodeError: any other
exception is a bug and is printed with the input in hex. Prints inputs per second, exceptions, and
RSS at the start and end (memory must stay flat).

    .venv/bin/python bench/fuzz.py --count 1000000
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import struct
import sys
import time
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from hsflowd_py.collector.exporter.flowkey import flow_key
from hsflowd_py.collector.exporter.server import families
from hsflowd_py.collector.exporter.state import ExportState
from hsflowd_py.collector.jsonout import format_json
from hsflowd_py.collector.lines import format_lines
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.collector.pcapout import PcapNgWriter, PcapWriter
from hsflowd_py.collector.text import Received, datagram_view, format_grep, format_text
from hsflowd_py.flow import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6
from hsflowd_py.packet import LINK_IP, SFLOWTOOL, STANDARD, ip_end, parse, payload_offset, tcp_sequence_at, walk
from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.records import Record, SampledHeader
from hsflowd_py.sflow.xdr import DecodeError

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
ORACLE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sflowtool-6.11"
CAPTURES = (VECTORS, VECTORS / "devices", ORACLE)
BOUNDARY = (0, 1, 0x7F, 0x80, 0xFF)
BIG = (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 1 << 20)


def seeds() -> tuple[list[bytes], list[bytes]]:
    datagrams = []
    for pcap in sorted(p for d in CAPTURES for p in d.glob("*.pcap")):
        with open(pcap, "rb") as f:
            datagrams += [packet.payload for packet in read_pcap(f)]
    decoded = []
    for d in datagrams:
        try:
            decoded.append(decode_datagram(d))
        except DecodeError as e:
            decoded.append(e.partial)  # type: ignore[attr-defined]
    headers = [
        r.header
        for d in decoded
        for s in d.samples
        for r in getattr(s, "records", ())
        if isinstance(r, SampledHeader)
    ]
    return datagrams, headers


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if not b:
            b = bytearray(rng.randbytes(rng.randint(1, 64)))
        if op == 0:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[rng.randrange(len(b))] = rng.choice(BOUNDARY)
        elif op == 2 and len(b) >= 4:
            i = rng.randrange(0, len(b) - 3) & ~3
            struct.pack_into(">I", b, i, rng.choice(BIG))
        elif op == 3:
            del b[rng.randrange(len(b)) :]
        elif op == 4:
            other = rng.choice(pool)
            i, j = rng.randrange(len(b) + 1), rng.randrange(len(other) + 1)
            b = b[:i] + other[j:]
        else:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 16))
    return bytes(b)


_SINK = io.BytesIO()
_PCAP, _PCAPNG = PcapWriter(_SINK), PcapNgWriter(_SINK, "fuzz")
_RECEIVED = Received("-", 0, 0, 1_700_000_000, 5)


def fuzz_decoder(data: bytes) -> None:
    try:
        d = decode_datagram(data)
    except DecodeError as e:
        d = getattr(e, "partial", None)  # what the collector still prints
        if d is None:
            return
    view = datagram_view(d, len(data), _RECEIVED)
    format_text(view)
    format_grep(view)
    format_json(view)
    format_json(view, indent=True)
    format_lines(d)
    _PCAP.write(d, len(data), _RECEIVED)
    _PCAPNG.write(d, len(data), _RECEIVED)
    _SINK.seek(0)
    _SINK.truncate()


def _error(data: bytes, only: frozenset[type[Record]] | None = None) -> str:
    """What a decode of ``data`` says is wrong with it ("" for nothing)."""
    try:
        decode_datagram(data, only)
    except DecodeError as e:
        return str(e)
    return ""


class _Counts:
    datagrams = 0
    errors = 0


class _Exporter:
    """The exporter's path of ``sflowtool-py --prometheus``: its decode, then its state, scraped now and then;
    the clock moves 10 ms an input, so agents, sources and flows also expire."""

    def __init__(self) -> None:
        self.state = ExportState(_Counts(), flows=10, expiry=30.0)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]
        self.now = 0.0
        self.inputs = 0

    def collect(self):  # type: ignore[no-untyped-def]
        return families(self.state, None, self.now)

    def __call__(self, data: bytes) -> None:
        full, mine = _error(data), _error(data, self.state.read)
        if mine != full:
            raise AssertionError(f"the exporter's decode says {mine!r}, the full decode {full!r}")
        self.inputs += 1
        self.now += 0.01
        if not mine:
            self.state.observe(decode_datagram(data, self.state.read), self.now, "192.0.2.1")
        if self.inputs % 5000 == 0:
            generate_latest(self.registry)


def fuzz_header(data: bytes) -> None:
    for link in (HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6, LINK_IP):
        parse(data, link, tunnel=True)
        flow_key(link, data)
        for rules in (STANDARD, SFLOWTOOL):
            layers = walk(data, link, rules=rules, chain=[])
            payload_offset(data, layers)
            tcp_sequence_at(layers, len(data))
            ip_end(data, layers, len(data))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1_000_000, help="inputs per target (default %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    datagrams, headers = seeds()
    failures = 0
    targets = (
        ("decoder", fuzz_decoder, datagrams),
        ("exporter", _Exporter(), datagrams),
        ("packet walker", fuzz_header, headers),
    )
    for name, target, pool in targets:
        start_rss, t0 = rss_mb(), time.perf_counter()
        for i in range(args.count):
            data = rng.randbytes(rng.randint(0, 300)) if i % 10 == 0 else mutate(rng, rng.choice(pool), pool)
            try:
                target(data)
            except Exception as e:  # any exception but DecodeError is a finding
                failures += 1
                if failures <= 20:
                    print(f"{name}: {type(e).__name__}: {e} on {data.hex()}", file=sys.stderr)
        elapsed = time.perf_counter() - t0
        print(
            f"{name}: {args.count} inputs in {elapsed:.1f} s ({args.count / elapsed:,.0f}/s), "
            f"RSS {start_rss:.1f} → {rss_mb():.1f} MB (peak {peak_rss_mb():.1f} MB)"
        )
    print(f"unexpected exceptions: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
